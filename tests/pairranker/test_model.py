import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from blendkit.data import ConfigError
from blendkit.pairranker import PairRankerConfig, PairRankerModel
from blendkit.pairranker.config import MARKER_TOKENS
from blendkit.pairranker.encoding import PairEncoder


def _batch(model, tokenizer, pairs):
    encoder = PairEncoder(tokenizer, model.config)
    rows = encoder.encode_rows([q for q, *_ in pairs], [[a, b] for _, a, b in pairs])
    return encoder, encoder.collate([encoder.pair(row, 0, 1) for row in rows], labels=[1.0] * len(pairs))


def test_config_rejects_a_window_longer_than_the_encoder(tiny_backbone):
    from transformers import AutoConfig

    encoder = AutoConfig.from_pretrained(tiny_backbone).to_dict()
    with pytest.raises(ConfigError, match=r"= 519 exceeds the encoder's 512 usable positions"):
        PairRankerConfig(encoder=encoder, source_max_length=256, candidate_max_length=128)
    with pytest.raises(ConfigError, match="candidate_max_length must be a positive integer"):
        PairRankerConfig(encoder=encoder, candidate_max_length=0)


def test_forward_shapes_loss_and_antisymmetric_head(tiny_ranker):
    model, tokenizer = tiny_ranker
    _, batch = _batch(model, tokenizer, [("q one", "short", "a much longer answer here"), ("q", "x", "y")])
    out = model(**batch)
    assert out.logits.shape == (2,) and out.scores.shape == (2, 2)
    torch.testing.assert_close(out.logits, out.scores[:, 0] - out.scores[:, 1])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, torch.ones(2))
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.head[0].weight.grad is not None and model.encoder.get_input_embeddings().weight.grad is not None
    model.zero_grad()


def test_from_backbone_keeps_pretrained_weights_and_adds_markers(tiny_backbone, tiny_ranker):
    model, tokenizer = tiny_ranker
    original = AutoModel.from_pretrained(tiny_backbone)
    base_vocab = original.config.vocab_size
    assert len(tokenizer) == base_vocab + len(MARKER_TOKENS)
    assert model.config.encoder.vocab_size == len(tokenizer)
    ours = model.encoder.state_dict()
    for name, tensor in original.state_dict().items():
        if name.startswith("pooler."):
            continue
        if name == "embeddings.word_embeddings.weight":
            torch.testing.assert_close(ours[name][:base_vocab], tensor)
        else:
            torch.testing.assert_close(ours[name], tensor, msg=name)
    assert model.encoder.pooler is None
    # Markers start from their describing words, distinct from each other (they may stay frozen).
    embeddings = model.encoder.get_input_embeddings().weight
    marker_rows = embeddings[tokenizer.convert_tokens_to_ids(list(MARKER_TOKENS))]
    assert torch.cdist(marker_rows, marker_rows).triu(1)[torch.triu(torch.ones(3, 3), 1).bool()].min() > 1e-3
    second = tokenizer("second answer", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(marker_rows[2], embeddings[second].mean(0))


def test_save_pretrained_round_trip_gives_identical_logits(tiny_ranker, tmp_path):
    model, tokenizer = tiny_ranker
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    assert set(load_file(tmp_path / "model.safetensors")) == set(model.state_dict())
    reloaded = PairRankerModel.from_pretrained(tmp_path).eval()
    reloaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded_tokenizer.convert_tokens_to_ids(list(MARKER_TOKENS)) == tokenizer.convert_tokens_to_ids(
        list(MARKER_TOKENS))
    pairs = [("Which is prime?", "7 is prime.", "8 is prime."), ("Hi", "Hello!", "Go away.")]
    _, batch = _batch(model, tokenizer, pairs)
    _, batch2 = _batch(reloaded, reloaded_tokenizer, pairs)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))
    with torch.no_grad():
        # Same weights, same inputs; the last float bit may differ: transformers maps the safetensors file
        # without copying, and a weight at an address that is not 64-byte aligned takes another SIMD path.
        torch.testing.assert_close(model(**batch).logits, reloaded(**batch2).logits, rtol=0, atol=1e-6)
    assert type(AutoModel.from_pretrained(tmp_path)) is PairRankerModel  # registered with the Auto classes


def test_truncation_keeps_a_share_for_each_part(tiny_ranker):
    model, tokenizer = tiny_ranker
    encoder = PairEncoder(tokenizer, model.config)
    huge = "word " * 100_000  # ~1 MB of text
    row = encoder.encode_rows([huge], [[huge, "tiny answer"]])[0]
    pair = encoder.pair(row, 0, 1)
    segments = pair["segment_ids"]
    cfg = model.config
    assert segments.count(0) == cfg.source_max_length + 3       # CLS, marker, text, SEP
    assert segments.count(1) == cfg.candidate_max_length + 2    # marker, text, SEP
    assert segments.count(2) == len(tokenizer("tiny answer", add_special_tokens=False)["input_ids"]) + 2
    assert len(pair["input_ids"]) <= cfg.pair_max_length
    assert row.candidates[0].full_length == 100_000 and pair["length_features"][0][1] == 1.0
    assert pair["length_features"][1][1] == 0.0


def test_empty_candidate_still_has_a_segment(tiny_ranker):
    model, tokenizer = tiny_ranker
    _, batch = _batch(model, tokenizer, [("q", "", "answer")])
    assert (batch["segment_ids"] == 1).sum() == 2  # its marker and SEP
    assert torch.isfinite(model(**batch).logits).all()


def test_marker_text_inside_an_answer_is_not_a_marker(tiny_ranker):
    model, tokenizer = tiny_ranker
    encoder = PairEncoder(tokenizer, model.config)
    row = encoder.encode_rows(["q"], [["I say <candidate_b> here", "b"]])[0]
    assert encoder.b_marker not in row.candidates[0].ids
