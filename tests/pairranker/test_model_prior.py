"""The optional per-model prior: off by default, 0 for an unknown model, saved with the model, trained jointly."""

import json

import numpy as np
import pytest
import torch
from helpers import ROOT, make_row, write_jsonl
from safetensors.torch import load_file

from blendkit import commands
from blendkit.data import ConfigError
from blendkit.pairranker import PairRankerConfig, PairRankerModel, Ranker
from blendkit.pairranker.encoding import PairEncoder
from blendkit.pairranker.module import PairRankerModule
from blendkit.pairranker.prior_fit import bradley_terry, fitted_prior, fitted_rule, win_counts
from blendkit.training.cli import train_cli as cli
from blendkit.training.lora import base_model

NAMES = ["alpaca-7b", "vicuna-13b", "wizardlm-13b"]
OFFSETS = [0.5, -1.0, 2.0]
QUESTION = "Which number is prime?"
ANSWERS = ["7 is prime.", "8 is prime because it is even.", "9.", "The number 11 is prime."]


@pytest.fixture(scope="module")
def prior_model(tiny_backbone):
    """A tiny ranker whose prior knows NAMES, with hand-set offsets OFFSETS."""
    torch.manual_seed(0)
    model, tokenizer = PairRankerModel.from_backbone(tiny_backbone, source_max_length=16, candidate_max_length=24,
                                                     head_hidden_size=16, use_model_prior=True, model_names=NAMES)
    with torch.no_grad():
        model.model_prior.offsets.copy_(torch.tensor(OFFSETS))
    return model.eval(), tokenizer


def _text_only_copy(model: PairRankerModel) -> PairRankerModel:
    """The same weights without the prior."""
    config = PairRankerConfig.from_dict({**model.config.to_dict(), "use_model_prior": False, "model_names": []})
    text_only = PairRankerModel(config).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("model_prior.")}
    assert text_only.load_state_dict(state, strict=True)
    return text_only


def test_the_prior_is_off_by_default(tiny_ranker, tiny_backbone):
    model, tokenizer = tiny_ranker
    assert PairRankerConfig().use_model_prior is False and model.config.use_model_prior is False
    assert model.model_prior is None and not any("model_prior" in k for k in model.state_dict())
    module = PairRankerModule(backbone=tiny_backbone, source_max_length=16, candidate_max_length=24)
    assert module.hparams.use_model_prior is False and module.model.model_prior is None
    # A text-only ranker ignores model names.
    ranker = Ranker(model, tokenizer)
    assert not ranker.uses_model_prior
    with_names = ranker.rank(QUESTION, ANSWERS, models=["a", "b", "c", "d"])[0]
    assert with_names.scores == ranker.rank(QUESTION, ANSWERS)[0].scores


def test_an_unknown_or_missing_model_gets_offset_zero(prior_model):
    model, tokenizer = prior_model
    text_only = _text_only_copy(model)
    encoder = PairEncoder(tokenizer, model.config)
    rows = encoder.encode_rows([QUESTION] * 2, [ANSWERS[:2], ANSWERS[2:]], [["gpt-9", None], None])
    batch = encoder.collate([encoder.pair(rows[0], 0, 1), encoder.pair(rows[1], 1, 0)])
    assert batch["model_ids"].tolist() == [[0, 0], [0, 0]]
    with torch.no_grad():
        expected = text_only(**{k: v for k, v in batch.items() if k != "model_ids"}).scores
        torch.testing.assert_close(model(**batch).scores, expected, rtol=0, atol=0)
        del batch["model_ids"]                                     # no names at all: unknown too
        torch.testing.assert_close(model(**batch).scores, expected, rtol=0, atol=0)
    assert model.model_prior(torch.tensor([0, 1, 2, 3])).tolist() == [0.0, *OFFSETS]


def test_the_prior_adds_each_models_offset_to_its_score(prior_model):
    model, tokenizer = prior_model
    ranker = Ranker(model, tokenizer, batch_size=4)
    assert ranker.uses_model_prior
    p_names = ranker.compare(QUESTION, ANSWERS[0], ANSWERS[1], model_a="wizardlm-13b", model_b="vicuna-13b")
    p_plain = ranker.compare(QUESTION, ANSWERS[0], ANSWERS[1])
    logit = torch.logit(torch.tensor([p_names, p_plain], dtype=torch.float64))
    assert (logit[0] - logit[1]).item() == pytest.approx(OFFSETS[2] - OFFSETS[1], abs=1e-4)

    models = ["vicuna-13b", "alpaca-7b", "unknown-model", "wizardlm-13b"]
    offsets = torch.tensor([OFFSETS[1], OFFSETS[0], 0.0, OFFSETS[2]])
    [aware] = ranker.rank(QUESTION, ANSWERS, models=models)
    [plain] = ranker.rank(QUESTION, ANSWERS)
    # max_logits sums M[i, j] + o_i - o_j over j != i: each score moves by N * o_i - sum(o).
    shift = len(ANSWERS) * offsets - offsets.sum()
    torch.testing.assert_close(torch.tensor(aware.scores) - torch.tensor(plain.scores), shift, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match=r"models\[0\] names 2 source models for 4 candidates"):
        ranker.rank([QUESTION], [ANSWERS], models=[["a", "b"]])


def test_save_and_reload_gives_identical_scores_and_lists_the_models(prior_model, tmp_path):
    model, tokenizer = prior_model
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["use_model_prior"] is True and config["model_names"] == NAMES
    assert load_file(tmp_path / "model.safetensors")["model_prior.offsets"].tolist() == OFFSETS
    reloaded = Ranker.from_pretrained(str(tmp_path))
    models = [["vicuna-13b", "alpaca-7b", "unknown-model", "wizardlm-13b"], ["alpaca-7b", None]]
    questions, answers = [QUESTION, "Say hi."], [ANSWERS, ["Hello!", "Go away."]]
    before = Ranker(model, tokenizer).rank(questions, answers, models=models)
    after = reloaded.rank(questions, answers, models=models)
    for a, b in zip(before, after):
        assert a.ranks == b.ranks
        assert a.scores == pytest.approx(b.scores, abs=1e-6)


def test_model_names_and_pooling_are_checked():
    with pytest.raises(ConfigError, match=r"model_names must be distinct; \['a'\]"):
        PairRankerConfig(use_model_prior=True, model_names=["a", "b", "a"])
    with pytest.raises(ConfigError, match="model_names must be non-empty strings"):
        PairRankerConfig(use_model_prior=True, model_names=["a", ""])
    with pytest.raises(ConfigError, match="pooling must be one of"):
        PairRankerConfig(pooling="max")


def test_set_model_names_needs_a_prior(tiny_ranker):
    model, _ = tiny_ranker
    with pytest.raises(ValueError, match="use_model_prior=False"):
        model.set_model_names(["a"])


def test_resuming_with_other_model_names_is_refused(tiny_backbone):
    module = PairRankerModule(backbone=tiny_backbone, source_max_length=16, candidate_max_length=24,
                              use_model_prior=True, model_names=["a", "b"])
    assert module.model.model_prior.offsets.shape == (2,)
    module.on_load_checkpoint({"hyper_parameters": {"model_config": {"model_names": ["a", "b"]}}})
    with pytest.raises(ConfigError, match=r"model.model_names: the checkpoint's model prior knows \['b', 'a'\]"):
        module.on_load_checkpoint({"hyper_parameters": {"model_config": {"model_names": ["b", "a"]}}})


# -- training ---------------------------------------------------------------------------------------- #

@pytest.fixture
def model_only_data(tmp_path):
    """Every candidate has the same text; only its source model tells how good it is (m4 best, m0 worst)."""
    def rows(prefix, n):
        out = []
        for k in range(n):
            row = make_row(f"{prefix}{k}", [j / 10 + ((k * 7 + j) % 3) / 1000 for j in range(5)])
            for cand in row["candidates"]:
                cand["text"] = "the same answer"
            out.append(row)
        return out
    return write_jsonl(tmp_path / "train.jsonl", rows("t", 24)), write_jsonl(tmp_path / "val.jsonl", rows("v", 4))


def _args(tiny_backbone, data, root, *extra):
    train, val = data
    return ["fit", "--config", str(ROOT / "configs" / "pairranker" / "minilm_cpu.yaml"),
            "--model.backbone", tiny_backbone, "--model.source_max_length", "16", "--model.candidate_max_length", "24",
            "--model.freeze_layers", "0", "--model.head_hidden_size", "16", "--model.learning_rate", "1e-3",
            "--model.head_learning_rate", "3e-2", "--model.use_model_prior", "true",
            "--data.train_file", train, "--data.val_file", val, "--data.val_pool", "null",
            "--data.pairs_per_row", "6", "--data.batch_size", "8", "--data.val_limit", "null",
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
            "--model.export_dir", str(root / "export"), *extra]


def test_training_learns_the_prior_of_the_training_datas_models(tiny_backbone, model_only_data, tmp_path):
    run = cli(_args(tiny_backbone, model_only_data, tmp_path, "--trainer.max_epochs", "2",
                    "--model.prior_init", "zeros"))
    model = base_model(run.model.model)
    assert model.config.model_names == ["m0", "m1", "m2", "m3", "m4"]        # read from the training data
    offsets = model.model_prior.offsets.detach()
    assert torch.equal(offsets.argsort(), torch.arange(5)), offsets         # m4 best ... m0 worst
    assert run.trainer.callback_metrics["val_pair_acc"] > 95.0

    exported = json.loads((tmp_path / "export" / "config.json").read_text())
    assert exported["use_model_prior"] is True and exported["model_names"] == model.config.model_names
    ranker = Ranker.from_pretrained(str(tmp_path / "export"))
    [result] = ranker.rank("q", ["x", "x", "x"], models=["m1", "m4", "m0"])
    assert result.ranks == [2, 1, 3]

    # The checkpoint rebuilds the same architecture (model names included) without the training data.
    commands.dispatch(["export", "--checkpoint", str(tmp_path / "checkpoints" / "last.ckpt"), "--output",
                       str(tmp_path / "from_ckpt")])
    a = PairRankerModel.from_pretrained(tmp_path / "export").state_dict()
    b = PairRankerModel.from_pretrained(tmp_path / "from_ckpt").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # Resuming reads the same names from the same data and continues.
    resumed = cli(_args(tiny_backbone, model_only_data, tmp_path, "--trainer.max_epochs", "3", "--ckpt_path", "last",
                        "--model.prior_init", "zeros"))
    assert resumed.trainer.global_step == 3 * -(-24 * 6 // 8)


def test_lora_trains_and_saves_the_prior(tiny_backbone, model_only_data, tmp_path):
    run = cli(_args(tiny_backbone, model_only_data, tmp_path, "--trainer.max_epochs", "1", "--model.lora_r", "4",
                    "--data.val_file", "null"))
    trainable = {n for n, p in run.model.model.named_parameters() if p.requires_grad}
    assert any("model_prior" in n and "modules_to_save" in n for n in trainable), trainable
    merged = PairRankerModel.from_pretrained(tmp_path / "export")
    assert merged.config.model_names == ["m0", "m1", "m2", "m3", "m4"]
    assert merged.model_prior.offsets.abs().min() > 0                       # trained, and kept by the merge
    commands.dispatch(["export", "--checkpoint", str(tmp_path / "checkpoints" / "last.ckpt"), "--output",
                       str(tmp_path / "adapter"), "--adapter-only"])
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert any("model_prior" in k for k in adapter), sorted(adapter)


def _strong_prior_ranker(prior_model, tmp_path):
    """A saved prior ranker whose offset for wizardlm-13b outweighs any text, and rows with named models."""
    model, tokenizer = prior_model
    folder = tmp_path / "ranker"
    with torch.no_grad():
        saved = model.model_prior.offsets.clone()
        model.model_prior.offsets.copy_(torch.tensor([0.0, 0.0, 50.0]))   # wizardlm-13b outranks any text
        model.save_pretrained(folder)
        model.model_prior.offsets.copy_(saved)
    tokenizer.save_pretrained(folder)
    rows = []
    for k in range(6):
        row = make_row(f"r{k}", [0.1 * ((k + j) % 4) for j in range(4)])
        for cand, name in zip(row["candidates"], ["alpaca-7b", "vicuna-13b", "wizardlm-13b", "other"]):
            cand["model"] = name
        rows.append(row)
    return str(folder), write_jsonl(tmp_path / "rows.jsonl", rows)


def test_blend_passes_the_candidates_models_to_a_prior_ranker(prior_model, tmp_path, capsys):
    folder, data = _strong_prior_ranker(prior_model, tmp_path)
    out = tmp_path / "blend.jsonl"
    commands.dispatch(["blend", "--data", data, "--ranker", folder, "--output", str(out), "--quiet"])
    capsys.readouterr()
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["selected"]["model"] for r in written] == ["wizardlm-13b"] * 6


def test_rank_passes_the_candidates_models_to_a_prior_ranker(prior_model, tmp_path, capsys):
    folder, data = _strong_prior_ranker(prior_model, tmp_path)
    out = tmp_path / "ranked.jsonl"
    commands.dispatch(["rank", "--data", data, "--model", folder, "--output", str(out), "--quiet"])
    capsys.readouterr()
    for row in map(json.loads, out.read_text().splitlines()):
        assert next(c["model"] for c in row["candidates"] if c["rank"] == 1) == "wizardlm-13b"


def test_fuse_passes_the_candidates_models_to_a_prior_ranker(prior_model, tiny_backbone, tmp_path):
    from blendkit.genfuser import Fuser, build_fuser

    folder, _ = _strong_prior_ranker(prior_model, tmp_path)
    model, tokenizer = build_fuser(tiny_backbone, max_candidates=1)
    fuser = Fuser(model, tokenizer, top_k=1, source_max_length=8, candidate_max_length=8, target_max_length=4)
    ranker = Ranker.from_pretrained(folder)
    texts = ["7 is prime.", "8 is prime.", "9."]
    [named] = fuser.fuse("Which number is prime?", texts, ranker=ranker, models=["alpaca-7b", "vicuna-13b",
                                                                                   "wizardlm-13b"], max_new_tokens=2)
    assert named.fused_from == [2]
    [swapped] = fuser.fuse("Which number is prime?", texts, ranker=ranker, models=["wizardlm-13b", "alpaca-7b",
                                                                                     "vicuna-13b"], max_new_tokens=2)
    assert swapped.fused_from == [0]


# -- the Bradley–Terry start ------------------------------------------------------------------------- #

def test_win_counts_by_hand():
    # Row 1: a (0.9) > b (0.5) = c (0.5, a tie: no count), unknown "z" ignored; row 2: c beats a.
    wins = win_counts([np.array([0.9, 0.5, 0.5, 1.0]), np.array([0.2, 0.7])],
                      [["a", "b", "c", "z"], ["a", "c"]], ["a", "b", "c"])
    assert wins.tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 0]]


def test_bradley_terry_recovers_the_strengths_that_made_the_wins():
    truth = np.array([-1.0, 0.0, 0.5, 0.5])
    p = 1 / (1 + np.exp(-(truth[:, None] - truth[None, :])))
    wins = 10_000 * p * (1 - np.eye(4))                      # expected counts of 10 000 meetings per pair
    fitted = bradley_terry(wins, l2=0.0)
    assert np.allclose(fitted, truth - truth.mean(), atol=1e-3), fitted
    assert np.allclose(bradley_terry(np.zeros((3, 3))), 0.0)
    # A model that never lost stays finite thanks to the L2 term.
    assert np.isfinite(bradley_terry(np.array([[0.0, 5.0], [0.0, 0.0]]))).all()


def test_a_new_prior_starts_from_the_training_datas_bradley_terry_strengths(tiny_backbone, model_only_data, tmp_path):
    run = cli(_args(tiny_backbone, model_only_data, tmp_path, "--trainer.max_steps", "1", "--data.val_file", "null",
                    "--model.head_learning_rate", "0.0", "--model.learning_rate", "0.0"))
    model = base_model(run.model.model)
    data = run.datamodule.train_data
    expected = fitted_prior(data.targets, [row.models for row in data.rows], model.config.model_names)
    assert torch.allclose(model.model_prior.offsets.detach(), expected)
    assert torch.equal(expected.argsort(), torch.arange(5)) and expected[4] - expected[0] > 2.0   # m4 best, m0 worst
    with pytest.raises(ValueError, match="model.prior_init must be one of"):
        PairRankerModule(backbone=tiny_backbone, use_model_prior=True, prior_init="ones")


# -- the rule start: strengths and a length weight, text head at 0 ----------------------------------------- #

def test_fitted_rule_recovers_strengths_and_the_length_weight_that_made_the_wins():
    """Rows whose judge score is strength[model] + 2·length + Gumbel noise (so that every pair is decided by a
    logistic of the difference, the fit's own model): the pairwise fit finds both."""
    generator = np.random.default_rng(0)
    truth, names = np.array([-1.0, 0.0, 1.0]), ["a", "b", "c"]
    targets, models, lengths = [], [], []
    for _ in range(400):
        ids = generator.integers(0, 3, size=8)
        x = generator.uniform(0, 1, size=8)
        targets.append(truth[ids] + 2.0 * x + generator.gumbel(size=8))
        models.append([names[i] for i in ids])
        lengths.append(x.tolist())
    offsets, weight = fitted_rule(targets, models, lengths, names, l2=0.0)
    assert np.allclose(offsets.numpy(), truth - truth.mean(), atol=0.15), offsets
    assert weight == pytest.approx(2.0, abs=0.3)
    # without a length effect the weight is ~0, and the strengths still come out
    flat = [t - 2.0 * np.asarray(x) for t, x in zip(targets, lengths)]
    assert abs(fitted_rule(flat, models, lengths, names)[1]) < 0.3
    assert fitted_rule([], [], [], names)[1] == 0.0


def test_a_length_aware_prior_adds_its_weight_times_the_length_feature(tiny_backbone, tmp_path):
    torch.manual_seed(0)
    model, tokenizer = PairRankerModel.from_backbone(tiny_backbone, source_max_length=16, candidate_max_length=24,
                                                     head_hidden_size=16, use_model_prior=True, model_names=NAMES,
                                                     prior_length=True)
    model.set_model_names(NAMES, torch.tensor(OFFSETS), length_weight=3.0)
    model.start_as_prior()
    model.eval()
    encoder = PairEncoder(tokenizer, model.config)
    [row] = encoder.encode_rows([QUESTION], [ANSWERS], [["alpaca-7b", "vicuna-13b", "wizardlm-13b", None]])
    # with the text head at 0 a candidate's score is offset + 3·log1p(tokens)/8: the rule, exactly
    expected = [OFFSETS[0], OFFSETS[1], OFFSETS[2], 0.0]
    expected = [e + 3.0 * encoder.length_features(c)[0] for e, c in zip(expected, row.candidates)]
    ranker = Ranker(model, tokenizer, precision="fp32")
    [result] = ranker.rank(QUESTION, ANSWERS, models=["alpaca-7b", "vicuna-13b", "wizardlm-13b", None])
    n = len(ANSWERS)
    assert result.scores == pytest.approx([(n - 1) * e - (sum(expected) - e) for e in expected], abs=1e-4)
    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    reloaded = Ranker.from_pretrained(str(tmp_path / "saved"), precision="fp32")
    assert reloaded.model.config.prior_length is True
    assert float(reloaded.model.model_prior.length_weight) == 3.0
    again = reloaded.rank(QUESTION, ANSWERS, models=["alpaca-7b", "vicuna-13b", "wizardlm-13b", None])[0]
    assert again.scores == pytest.approx(result.scores, abs=1e-6)
    with pytest.raises(ConfigError, match="prior_length needs"):
        PairRankerConfig(prior_length=True)


def test_a_rule_start_trains_from_the_fitted_rule(tiny_backbone, model_only_data, tmp_path):
    run = cli(_args(tiny_backbone, model_only_data, tmp_path, "--trainer.max_steps", "1", "--data.val_file", "null",
                    "--model.head_learning_rate", "0.0", "--model.learning_rate", "0.0", "--model.prior_init", "rule"))
    model = base_model(run.model.model)
    data = run.datamodule.train_data
    lengths = [[np.log1p(c.full_length) / 8 for c in row.candidates] for row in data.rows]
    offsets, weight = fitted_rule(data.targets, [row.models for row in data.rows], lengths, model.config.model_names)
    assert model.config.prior_length is True
    assert torch.allclose(model.model_prior.offsets.detach(), offsets)
    assert float(model.model_prior.length_weight) == pytest.approx(weight)
    assert model.head[-1].weight.abs().max() == 0 and model.head[-1].bias.abs().max() == 0   # text part at 0
    assert torch.equal(offsets.argsort(), torch.arange(5))                              # m4 best ... m0 worst
    with pytest.raises(ConfigError, match="use_length_features"):
        PairRankerModule(backbone=tiny_backbone, use_model_prior=True, prior_init="rule", use_length_features=False)
