"""The fast inference paths: bf16 detection, the precision modes of Ranker and their agreement with fp32."""

import copy

import pytest
import torch

import blendkit.pairranker.inference as inference
from blendkit.core import hardware
from blendkit.pairranker import Ranker
from blendkit.pairranker.inference import BF16_LOGIT_TOLERANCE

QUESTIONS = [f"Question {k}: what is {k} plus {3 * k}, and why?" for k in range(8)]
CANDIDATES = [[f"Answer {j} to question {k}: " + "because " * ((7 * j + k) % 13) + f"it is {4 * k + j % 2}."
               for j in range(6)] for k in range(8)]


@pytest.fixture
def sharp_ranker(tiny_ranker):
    """A copy of the tiny ranker whose head is scaled up, so logits span a few units like a trained ranker's
    (the random head's logits are ~0.004, too small for any tolerance to mean something)."""
    model, tokenizer = tiny_ranker
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.head[-1].weight.mul_(1000.0)
    return model, tokenizer


@pytest.fixture
def fresh_detection():
    """Forget the cached CPU answer before and after a test that fakes the CPU."""
    hardware.cpu_has_fast_bf16.cache_clear()
    yield
    hardware.cpu_has_fast_bf16.cache_clear()


def all_pairs(ranker: Ranker):
    rows = ranker.encode(QUESTIONS, CANDIDATES)
    pairs = [(r, i, j) for r, row in enumerate(rows) for i in range(len(row.candidates))
             for j in range(len(row.candidates)) if i != j]
    return rows, pairs


def assert_within_bf16_tolerance(fast: torch.Tensor, exact: torch.Tensor) -> None:
    torch.testing.assert_close(fast, exact, **BF16_LOGIT_TOLERANCE)
    assert not torch.equal(fast, exact), "bf16 gave fp32's logits bit for bit: it did not run in bf16"


# -- detection ---------------------------------------------------------------------------------------

def test_detection_answers_with_a_bool(fresh_detection):
    answer = hardware.cpu_has_fast_bf16()
    assert isinstance(answer, bool)
    assert hardware.fast_bf16("cpu") is answer and hardware.fast_bf16(torch.device("cpu")) is answer
    assert hardware.fast_bf16("meta") is False


@pytest.mark.parametrize(("flags", "expected"), [({"avx512f", "amx_tile", "amx_bf16"}, True),
                                                 ({"avx2", "avx512f", "avx512_bf16"}, True),
                                                 ({"avx2", "avx512f", "avx512_vnni"}, False), (set(), False)])
def test_detection_reads_cpu_flags_without_torch_probes(monkeypatch, fresh_detection, flags, expected):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: flags)
    assert hardware.cpu_has_fast_bf16() is expected


def test_detection_says_no_without_onednn(monkeypatch, fresh_detection):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert hardware.cpu_has_fast_bf16() is False


# -- precision modes -------------------------------------------------------------------------------

def test_fp32_is_bit_identical_to_the_eager_model(tiny_ranker):
    model, tokenizer = tiny_ranker
    ranker = Ranker(model, tokenizer, batch_size=1000, bucket_by_length=False, precision="fp32")
    rows, pairs = all_pairs(ranker)
    with torch.inference_mode():
        eager = model(**ranker.encoder.collate([ranker.encoder.pair(rows[r], i, j) for r, i, j in pairs])).logits
    assert torch.equal(ranker.pair_logits(rows, pairs), eager)
    assert ranker._forward_model() is model


def test_auto_falls_back_to_fp32_when_detection_says_no(monkeypatch, sharp_ranker):
    model, tokenizer = sharp_ranker
    exact = Ranker(model, tokenizer, precision="fp32")
    rows, pairs = all_pairs(exact)
    expected = exact.pair_logits(rows, pairs)

    monkeypatch.setattr(inference, "fast_bf16", lambda device: False)
    auto = Ranker(model, tokenizer)
    assert auto.precision == "auto" and auto.compute_precision == "fp32"
    assert torch.equal(auto.pair_logits(rows, pairs), expected)

    monkeypatch.setattr(inference, "fast_bf16", lambda device: True)
    assert auto.compute_precision == "bf16"
    assert_within_bf16_tolerance(auto.pair_logits(rows, pairs), expected)


@pytest.mark.parametrize("precision", ["bf16", "bf16-autocast"])
def test_bf16_logits_stay_within_tolerance_and_keep_the_top1(sharp_ranker, precision):
    model, tokenizer = sharp_ranker
    exact, fast = Ranker(model, tokenizer, precision="fp32"), Ranker(model, tokenizer, precision=precision)
    rows, pairs = all_pairs(exact)
    exact_logits = exact.pair_logits(rows, pairs)
    assert exact_logits.abs().max() > 2.0            # a trained ranker's scale, where bf16 rounding shows
    assert_within_bf16_tolerance(fast.pair_logits(rows, pairs), exact_logits)

    # Each order-averaged logit moves by at most `bound`, so a candidate's score by at most (N - 1) * bound:
    # the top-1 pick must survive wherever fp32's winning margin is larger than twice that.
    bound = BF16_LOGIT_TOLERANCE["atol"] + BF16_LOGIT_TOLERANCE["rtol"] * float(exact_logits.abs().max())
    exact_results, fast_results = exact.rank(QUESTIONS, CANDIDATES), fast.rank(QUESTIONS, CANDIDATES)
    decisive = 0
    for a, b in zip(exact_results, fast_results):
        first, second = sorted(a.scores, reverse=True)[:2]
        if first - second > 2 * (len(a.scores) - 1) * bound:
            decisive += 1
            assert a.best == b.best
    assert decisive >= len(QUESTIONS) // 2
    assert sum(a.best == b.best for a, b in zip(exact_results, fast_results)) >= len(QUESTIONS) - 1
    assert next(model.parameters()).dtype == torch.float32   # the caller's model is left in fp32


def test_bf16_copy_follows_weight_updates(sharp_ranker):
    model, tokenizer = sharp_ranker
    fast, exact = Ranker(model, tokenizer, precision="bf16"), Ranker(model, tokenizer, precision="fp32")
    rows, pairs = all_pairs(exact)
    before = fast.pair_logits(rows, pairs)
    twin = fast._forward_model()
    assert twin.encoder.encoder.dtype == torch.bfloat16 and twin.head is model.head
    assert twin.head[0].weight.dtype == torch.float32 and model.encoder.dtype == torch.float32
    assert Ranker(model, tokenizer, precision="bf16")._forward_model() is twin   # unchanged weights: reused

    with torch.no_grad():                            # what an optimizer step does: an in-place update
        model.encoder.embeddings.word_embeddings.weight.mul_(-1.0)
    after = fast.pair_logits(rows, pairs)
    assert fast._forward_model() is not twin
    assert (after - before).abs().max() > 0.1
    assert_within_bf16_tolerance(after, exact.pair_logits(rows, pairs))


def test_a_bf16_model_runs_as_loaded(tiny_ranker):
    model, tokenizer = tiny_ranker
    model = copy.deepcopy(model).to(torch.bfloat16)
    rows, pairs = all_pairs(Ranker(model, tokenizer))
    logits = {p: Ranker(model, tokenizer, precision=p).pair_logits(rows, pairs) for p in ("fp32", "bf16", "auto")}
    assert torch.equal(logits["bf16"], logits["fp32"]) and torch.equal(logits["auto"], logits["fp32"])
    assert Ranker(model, tokenizer, precision="bf16")._forward_model() is model     # no second bf16 copy


def test_sharded_weights_use_autocast_instead_of_a_copy(monkeypatch, sharp_ranker):
    model, tokenizer = sharp_ranker
    monkeypatch.setattr(inference, "_is_partitioned", lambda model: True)
    ranker = Ranker(model, tokenizer, precision="bf16")
    rows, pairs = all_pairs(ranker)
    autocast = Ranker(model, tokenizer, precision="bf16-autocast").pair_logits(rows, pairs)
    assert torch.equal(ranker.pair_logits(rows, pairs), autocast)
    assert ranker._forward_model().encoder.encoder is model.encoder     # no copy: the fp32 encoder, autocast


def test_bad_precision_and_batch_size_are_rejected(tiny_ranker, ranker_dir):
    model, tokenizer = tiny_ranker
    with pytest.raises(ValueError, match="precision must be one of"):
        Ranker(model, tokenizer, precision="fp16")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        Ranker(model, tokenizer, batch_size=0)
    assert Ranker.from_pretrained(ranker_dir, precision="fp32").compute_precision == "fp32"
