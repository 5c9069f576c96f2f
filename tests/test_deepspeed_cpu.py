"""DeepSpeed ZeRO-2 with bf16-mixed, on CPU: train -> DeepSpeed checkpoint folder -> export -> reload -> resume.

The recipes `configs/pairranker/deberta_zero2.yaml` and `configs/genfuser/t5_zero2.yaml` are GPU recipes;
this file runs the same route (`train.py` -> `DeepSpeedStrategy(stage=2)` with `precision: bf16-mixed` ->
`infer.py export`) on tiny models and the embedded sample data, on CPU, through the test-only
`deepspeed_cpu.CPUDeepSpeedStrategy`. In DeepSpeed's bf16 mode the model holds bf16 weights and the ZeRO
optimizer holds the fp32 master weights; the export must hold exactly those fp32 master weights.
"""

import statistics

import pytest
import torch
from deepspeed_cpu import LossHistory, deepspeed_process_group  # sets DS_ACCELERATOR=cpu before deepspeed loads
from helpers import ROOT

pytest.importorskip("deepspeed", reason="deepspeed is not installed (`make install` installs it for CPU)")

from blendkit import commands  # noqa: E402
from blendkit.data import load_mixinstruct  # noqa: E402
from blendkit.genfuser import Fuser  # noqa: E402
from blendkit.genfuser.model import load_fuser  # noqa: E402
from blendkit.pairranker import PairRankerModel, Ranker  # noqa: E402
from blendkit.training.cli import train_cli as cli  # noqa: E402
from blendkit.training.deepspeed_guard import is_deepspeed_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow   # real models or subprocesses: left out by `make test-fast`

SAMPLES = ROOT / "data" / "samples"
STEPS = 30


def zero2_args(recipe: str, backbone: str, root, steps: int, *extra: str) -> list[str]:
    """`train.py fit` on a CPU recipe, switched to ZeRO stage 2 + bf16-mixed, on the sample's training rows."""
    return ["fit", "--config", str(ROOT / "configs" / recipe), "--model.backbone", backbone,
            "--trainer.strategy", "deepspeed_cpu.CPUDeepSpeedStrategy", "--trainer.strategy.stage", "2",
            "--trainer.precision", "bf16-mixed", "--trainer.max_steps", str(steps), "--trainer.max_epochs", "-1",
            "--trainer.callbacks+=deepspeed_cpu.LossHistory", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root),
            "--data.train_file", str(SAMPLES / "train.jsonl.gz"), "--data.val_file", "null",
            "--model.export_dir", "null", *extra]


@pytest.fixture(scope="module", autouse=True)
def process_group():
    """One gloo process group for this file (DeepSpeed caches its groups, so it cannot be re-created in a
    process); none is left behind for later tests (nor RANK, MASTER_PORT, ...)."""
    with deepspeed_process_group():
        yield


def losses(run) -> list[float]:
    [history] = [c for c in run.trainer.callbacks if isinstance(c, LossHistory)]
    return history.losses


def assert_export_holds_the_master_weights(live: torch.nn.Module, exported: dict[str, torch.Tensor]) -> None:
    """Every trained parameter: exported (fp32) == the ZeRO optimizer's fp32 master copy, bit for bit, and
    exported rounded to bf16 == the bf16 weight the model trained with (DeepSpeed rounds the master the same way).
    A frozen parameter has no master copy: DeepSpeed's bf16 mode rounded it to bf16 once, and it exports as
    that bf16 value (in fp32), not as the backbone's original fp32 value."""
    from deepspeed.utils import safe_get_full_fp32_param

    params = dict(live.named_parameters())
    assert params and all(p.dtype == torch.bfloat16 for p in params.values())  # DeepSpeed's bf16 mode
    for name, param in params.items():
        assert exported[name].dtype == torch.float32, name
        if not param.requires_grad:
            assert torch.equal(exported[name], param.detach().float()), name
            continue
        assert torch.equal(exported[name], safe_get_full_fp32_param(param)), name
        assert torch.equal(exported[name].to(torch.bfloat16), param.detach()), name


def sample_rows(n: int, candidates: int) -> tuple[list[str], list[list[str]]]:
    rows = load_mixinstruct(str(SAMPLES / "val.jsonl.gz")).dataset.select(range(n))
    return list(rows["instruction"]), [[c["text"] for c in cands[:candidates]] for cands in rows["candidates"]]


def test_ranker_zero2_bf16_checkpoint_exports_master_weights_and_resumes(tiny_backbone, tmp_path):
    # Two fixed batches of sample pairs (overfit_batches) so that 30 steps show a clear fall of the loss.
    args = ["--model.source_max_length", "16", "--model.candidate_max_length", "24", "--model.freeze_layers", "0",
            "--model.head_hidden_size", "16", "--model.learning_rate", "1e-3", "--model.head_learning_rate", "1e-2",
            "--data.batch_size", "16", "--trainer.overfit_batches", "2"]
    run = cli(zero2_args("pairranker/minilm_cpu.yaml", tiny_backbone, tmp_path, STEPS, *args))
    loss = losses(run)
    assert len(loss) == STEPS and run.trainer.global_step == STEPS
    assert statistics.mean(loss[-5:]) < statistics.mean(loss[:5]) - 0.05, loss

    # Lightning saved last.ckpt as a DeepSpeed checkpoint folder; `infer.py export` gathers it to safetensors.
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    assert checkpoint.is_dir() and is_deepspeed_checkpoint(str(checkpoint))
    export = tmp_path / "export"
    commands.dispatch(["export", "--checkpoint", str(checkpoint), "--output", str(export)])
    assert (export / "model.safetensors").is_file()
    live = run.model.model
    assert_export_holds_the_master_weights(live, PairRankerModel.from_pretrained(export).state_dict())

    # The reloaded ranker scores as the trained one: bit for bit when loaded in bf16 (the dtype it trained
    # in), and within bf16 rounding when loaded in fp32 (observed: max |diff| ~0.007 on scores up to ~1.6).
    instructions, candidates = sample_rows(2, 4)
    trained = [r.scores for r in Ranker(live, run.model.tokenizer).rank(instructions, candidates)]
    as_bf16 = [r.scores for r in Ranker.from_pretrained(str(export), dtype=torch.bfloat16).rank(instructions,
                                                                                                 candidates)]
    as_fp32 = [r.scores for r in Ranker.from_pretrained(str(export)).rank(instructions, candidates)]
    assert as_bf16 == trained
    torch.testing.assert_close(torch.tensor(as_fp32), torch.tensor(trained), atol=0.05, rtol=0.02)

    # Resuming from the folder restores the weights (the loss goes on from where it was, not from ln 2) and
    # the ZeRO optimizer state: the step count goes on from 30, and so does AdamW's own step counter.
    resumed = cli(zero2_args("pairranker/minilm_cpu.yaml", tiny_backbone, tmp_path, STEPS + 10, *args,
                             "--ckpt_path", str(checkpoint)))
    assert resumed.trainer.global_step == STEPS + 10 and len(losses(resumed)) == 10
    assert statistics.mean(losses(resumed)) < statistics.mean(loss[:5]) - 0.05, losses(resumed)
    # the two overfit batches alternate: the resumed first step sees the batch of step STEPS - 2
    assert abs(losses(resumed)[0] - loss[-2]) < 0.05, (losses(resumed)[:2], loss[-4:])
    adam = resumed.trainer.optimizers[0].optimizer.state_dict()["state"]
    assert adam and all(int(state["step"]) == STEPS + 10 for state in adam.values())


def test_frozen_layers_export_as_the_bf16_values_they_trained_with(tiny_backbone, tmp_path):
    """The CPU ranker recipe freezes the lowest layers. Under DeepSpeed bf16 they are rounded to bf16 once and
    never get an fp32 master copy, so the export holds them as bf16 values, not the backbone's fp32 values."""
    args = ["--model.source_max_length", "16", "--model.candidate_max_length", "24", "--model.freeze_layers", "1",
            "--model.head_hidden_size", "16", "--data.batch_size", "8"]
    run = cli(zero2_args("pairranker/minilm_cpu.yaml", tiny_backbone, tmp_path, 3, *args))
    commands.dispatch(["export", "--checkpoint", str(tmp_path / "checkpoints" / "last.ckpt"), "--output",
                str(tmp_path / "export")])
    live = run.model.model
    exported = PairRankerModel.from_pretrained(tmp_path / "export").state_dict()
    assert_export_holds_the_master_weights(live, exported)
    frozen = [name for name, param in live.named_parameters() if not param.requires_grad]
    assert "encoder.encoder.layer.0.attention.self.query.weight" in frozen
    assert "encoder.encoder.layer.1.attention.self.query.weight" not in frozen
    original, _ = PairRankerModel.from_backbone(tiny_backbone, source_max_length=16, candidate_max_length=24,
                                                head_hidden_size=16)
    weight = "encoder.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(exported[weight], original.state_dict()[weight])
    assert torch.equal(exported[weight], original.state_dict()[weight].to(torch.bfloat16).float())


class _Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_resume_from_a_folder_with_a_payload_is_refused_before_deepspeed_reads_it(tiny_backbone, tmp_path):
    """`--ckpt_path last` resolves to a folder that passes Lightning's check (it has `checkpoint/`) while
    `latest` sends DeepSpeed to another tag whose model file is a payload: refused, and nothing runs."""
    from blendkit.core.errors import DataError

    marker = tmp_path / "pwned"
    folder = tmp_path / "checkpoints" / "last.ckpt"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "evil").mkdir()
    (folder / "latest").write_text("evil")
    torch.save({"module": _Payload(str(marker))}, folder / "evil" / "mp_rank_00_model_states.pt")
    args = ["--model.source_max_length", "16", "--model.candidate_max_length", "24", "--model.freeze_layers", "0",
            "--model.head_hidden_size", "16", "--data.batch_size", "8", "--ckpt_path", "last"]
    with pytest.raises(DataError, match="mp_rank_00_model_states.pt: refused: reading it would call io.open"):
        cli(zero2_args("pairranker/minilm_cpu.yaml", tiny_backbone, tmp_path, 3, *args))
    assert not marker.exists()


def test_fuser_zero2_bf16_checkpoint_exports_master_weights(tiny_backbone, tmp_path):
    args = ["--model.source_max_length", "16", "--model.candidate_max_length", "12", "--model.target_max_length",
            "12", "--model.learning_rate", "3e-3", "--model.bertscore_model", "null", "--data.batch_size", "8"]
    run = cli(zero2_args("genfuser/minilm_cpu.yaml", tiny_backbone, tmp_path, STEPS, *args))
    loss = losses(run)
    assert len(loss) == STEPS and run.trainer.global_step == STEPS
    assert statistics.mean(loss[-5:]) < statistics.mean(loss[:5]) - 0.5, loss  # from ln(30527) = 10.3

    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    assert checkpoint.is_dir() and is_deepspeed_checkpoint(str(checkpoint))
    export = tmp_path / "export"
    commands.dispatch(["export", "--checkpoint", str(checkpoint), "--output", str(export)])
    assert (export / "model.safetensors").is_file() and (export / "blendkit_fuser.json").is_file()
    live = run.model.model
    fp32_model, _ = load_fuser(str(export))
    assert_export_holds_the_master_weights(live, fp32_model.state_dict())

    # Teacher-forced logits on a batch of sample rows: bit for bit when reloaded in bf16, within bf16
    # rounding when reloaded in fp32 (observed: max |diff| ~0.01 on logits up to ~2).
    instructions, candidates = sample_rows(3, 3)
    formatter = run.model.formatter
    batch = formatter.collate(formatter.encode_sources(instructions, candidates),
                              formatter.encode_targets(["A fused answer to compare."] * 3))
    reloaded = Fuser.from_pretrained(str(export), dtype=torch.bfloat16)
    with torch.no_grad():
        trained, as_bf16, as_fp32 = (m.eval()(**batch).logits for m in (live, reloaded.model, fp32_model))
    assert torch.equal(as_bf16, trained)
    torch.testing.assert_close(as_fp32, trained.float(), atol=0.05, rtol=0.02)

    # The reloaded fuser (its settings file included) generates what the trained module generates.
    fused = Fuser(live, run.model.tokenizer, **run.model.settings()).fuse(instructions, candidates, max_new_tokens=8)
    assert [r.fused for r in reloaded.fuse(instructions, candidates, max_new_tokens=8)] == [r.fused for r in fused]
