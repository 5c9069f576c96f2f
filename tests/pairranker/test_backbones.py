"""Backbones beyond BERT: decoder-only LMs (Llama/SmolLM2, Gemma 3) pooled at each part's last token with
LoRA by default, and MPNet (all-mpnet-base-v2, a RoBERTa-like position offset). Tiny random configs on the
real tokenizers for logic; one real load of each packaged model (slow)."""

import pytest
import torch
from helpers import ROOT, make_row, write_jsonl
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, MPNetConfig, MPNetModel

from blendkit.data import ConfigError
from blendkit.pairranker import PairRankerConfig, PairRankerModel, Ranker
from blendkit.pairranker.encoding import PairEncoder
from blendkit.pairranker.module import DECODER_LORA_R, PairRankerModule
from blendkit.training.cli import train_cli as cli
from blendkit.training.lora import base_model

QUESTION = "Which number is prime?"
ANSWERS = ["7 is prime.", "8 is prime because it is even.", "9.", "The number 11 is prime."]
SMALL = dict(source_max_length=16, candidate_max_length=24, head_hidden_size=16)


@pytest.fixture(scope="module")
def llama_ranker(tiny_llama_a):
    torch.manual_seed(0)
    model, tokenizer = PairRankerModel.from_backbone(tiny_llama_a, **SMALL)
    return model.eval(), tokenizer


def _batch(model, tokenizer, pairs):
    encoder = PairEncoder(tokenizer, model.config)
    rows = encoder.encode_rows([q for q, *_ in pairs], [[a, b] for _, a, b in pairs])
    return encoder.collate([encoder.pair(row, 0, 1) for row in rows], labels=[1.0] * len(pairs))


# -- decoder-only LMs ------------------------------------------------------------------------------- #

def test_a_causal_lm_becomes_the_encoder_without_its_head_and_pools_last_tokens(llama_ranker, tiny_llama_a):
    model, tokenizer = llama_ranker
    assert model.config.pooling == "last" and type(model.encoder).__name__ == "LlamaModel"
    lm = AutoModelForCausalLM.from_pretrained(tiny_llama_a)
    ours = model.encoder.state_dict()
    base_vocab = lm.config.vocab_size
    for name, tensor in lm.model.state_dict().items():
        if name == "embed_tokens.weight":
            torch.testing.assert_close(ours[name][:base_vocab], tensor)
        else:
            torch.testing.assert_close(ours[name], tensor, msg=name)
    assert PairRankerConfig(encoder=AutoModel.from_pretrained(tiny_llama_a).config.to_dict()).pooling == "last"
    assert PairRankerConfig().pooling == "mean"                      # encoders keep mean pooling


def test_decoder_pairs_open_with_bos_and_close_each_part_with_eos(llama_ranker):
    model, tokenizer = llama_ranker
    encoder = PairEncoder(tokenizer, model.config)
    row = encoder.encode_rows([QUESTION], [ANSWERS[:2]])[0]
    pair = encoder.pair(row, 0, 1)
    ids, segments = pair["input_ids"], pair["segment_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[1] == encoder.source_marker
    for part in range(3):
        last = max(k for k, s in enumerate(segments) if s == part)
        assert ids[last] == tokenizer.eos_token_id
    assert encoder.pad_id == tokenizer.pad_token_id is not None


def test_a_tokenizer_without_bos_or_pad_still_builds_pairs(llama_ranker, tmp_path):
    model, tokenizer = llama_ranker
    tokenizer.save_pretrained(tmp_path)
    bare = AutoTokenizer.from_pretrained(tmp_path)
    bare.bos_token, bare.pad_token = None, None
    encoder = PairEncoder(bare, model.config)
    row = encoder.encode_rows([QUESTION], [ANSWERS[:2]])[0]
    pair = encoder.pair(row, 0, 1)
    assert pair["input_ids"][0] == encoder.source_marker                  # no opening token at all
    assert encoder.pad_id == bare.eos_token_id                             # EOS pads
    batch = encoder.collate([pair, encoder.pair(row, 1, 0)])
    assert torch.isfinite(model(**batch).logits).all()


def test_with_causal_attention_the_first_answer_never_sees_the_second(llama_ranker):
    model, tokenizer = llama_ranker
    with torch.no_grad():
        one = model(**_batch(model, tokenizer, [(QUESTION, ANSWERS[0], ANSWERS[1])])).scores[0]
        other_b = model(**_batch(model, tokenizer, [(QUESTION, ANSWERS[0], ANSWERS[3])])).scores[0]
        other_a = model(**_batch(model, tokenizer, [(QUESTION, ANSWERS[2], ANSWERS[1])])).scores[0]
    torch.testing.assert_close(one[0], other_b[0], rtol=0, atol=1e-5)    # A's score ignores B
    assert abs(one[1] - other_a[1]) > 1e-6                                 # B's score has read A


def test_decoder_forward_backward_and_padding_do_not_change_scores(llama_ranker):
    model, tokenizer = llama_ranker
    pairs = [(QUESTION, ANSWERS[0], ANSWERS[3]), ("Hi", "Hello!", "Go away.")]
    batch = _batch(model, tokenizer, pairs)
    out = model(**batch)
    out.loss.backward()
    assert model.head[0].weight.grad is not None and model.encoder.layers[0].self_attn.q_proj.weight.grad is not None
    model.zero_grad()
    with torch.no_grad():   # right padding of the shorter pair changes nothing (attention mask, last-token index)
        alone = model(**_batch(model, tokenizer, pairs[1:])).logits
    torch.testing.assert_close(out.logits[1:].detach(), alone, rtol=0, atol=1e-5)


def test_decoder_ranker_reloads_to_identical_scores(llama_ranker, tmp_path):
    model, tokenizer = llama_ranker
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = Ranker.from_pretrained(str(tmp_path))
    assert reloaded.model.config.pooling == "last"
    before = Ranker(model, tokenizer).rank(QUESTION, ANSWERS)[0]
    after = reloaded.rank(QUESTION, ANSWERS)[0]
    assert before.ranks == after.ranks and before.scores == pytest.approx(after.scores, abs=1e-5)


def test_gemma_backbone_opens_with_bos_and_ranks(tiny_gemma):
    torch.manual_seed(0)
    model, tokenizer = PairRankerModel.from_backbone(tiny_gemma, **SMALL)
    assert model.config.pooling == "last" and type(model.encoder).__name__ == "Gemma3TextModel"
    batch = _batch(model.eval(), tokenizer, [(QUESTION, ANSWERS[0], ANSWERS[1])])
    assert batch["input_ids"][0, 0] == tokenizer.convert_tokens_to_ids("<bos>")
    [result] = Ranker(model, tokenizer).rank(QUESTION, ANSWERS)
    assert sorted(result.ranks) == [1, 2, 3, 4]


def test_lora_is_the_default_for_decoders_only(tiny_llama_a, tiny_backbone):
    decoder = PairRankerModule(backbone=tiny_llama_a, **SMALL)
    assert decoder.hparams.lora_r == DECODER_LORA_R
    trainable = {n for n, p in decoder.model.named_parameters() if p.requires_grad}
    assert any("q_proj.lora_A" in n for n in trainable) and not any("embed_tokens" in n for n in trainable)
    assert PairRankerModule(backbone=tiny_backbone, **SMALL).hparams.lora_r == 0
    full = PairRankerModule(backbone=tiny_llama_a, lora_r=0, **SMALL)
    assert not hasattr(full.model, "peft_config") and all(p.requires_grad for p in full.model.parameters())


def test_smollm2_recipe_trains_a_tiny_llama_and_exports_it(tiny_llama_a, tmp_path):
    rows = [make_row(f"t{k}", [((k * 7 + j * 3) % 10) / 10 for j in range(4)]) for k in range(12)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    run = cli(["fit", "--config", str(ROOT / "configs" / "pairranker" / "smollm2_lora.yaml"),
               "--model.backbone", tiny_llama_a, "--model.source_max_length", "16",
               "--model.candidate_max_length", "24", "--model.head_hidden_size", "16", "--model.lora_r", "null",
               "--data.train_file", train, "--data.val_file", "null", "--data.pairs_per_row", "4",
               "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
               "--model.export_dir", str(tmp_path / "export")])
    assert run.trainer.global_step == 12 * 4 // 8 and run.model.hparams.lora_r == DECODER_LORA_R
    exported = Ranker.from_pretrained(str(tmp_path / "export"), precision="fp32")   # exact, to compare with 1e-4
    assert exported.model.config.pooling == "last" and not any("lora" in k for k in exported.model.state_dict())
    trained = Ranker(run.model.model, run.model.tokenizer, precision="fp32").rank(QUESTION, ANSWERS)[0]
    again = exported.rank(QUESTION, ANSWERS)[0]
    assert trained.ranks == again.ranks and trained.scores == pytest.approx(again.scores, abs=1e-4)  # LoRA merged


# -- MPNet ------------------------------------------------------------------------------------------ #

def test_mpnet_position_limit_counts_its_offset():
    encoder = dict(model_type="mpnet", max_position_embeddings=514, pad_token_id=1, hidden_size=32,
                   num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    assert PairRankerConfig(encoder=encoder, source_max_length=128, candidate_max_length=188).pair_max_length == 511
    with pytest.raises(ConfigError, match=r"= 513 exceeds the encoder's 512 usable positions"):
        PairRankerConfig(encoder=encoder, source_max_length=128, candidate_max_length=189)


def test_tiny_mpnet_ranks_freezes_layers_and_finds_lora_targets(tiny_backbone, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    config = MPNetConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    MPNetModel(config).save_pretrained(tmp_path / "mpnet")
    tokenizer.save_pretrained(tmp_path / "mpnet")
    module = PairRankerModule(backbone=str(tmp_path / "mpnet"), freeze_layers=1, lora_r=4, **SMALL)
    model = base_model(module.model)
    assert model.config.pooling == "mean" and model.encoder.pooler is None
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert any(".attn.q.lora_A" in n for n in trainable) and any(".attn.v.lora_A" in n for n in trainable)
    full = PairRankerModule(backbone=str(tmp_path / "mpnet"), freeze_layers=1, **SMALL)
    frozen = {n for n, p in full.model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("encoder.encoder.layer.0.") for n in frozen)
    assert not any(n.startswith("encoder.encoder.layer.1.") for n in frozen)
    batch = _batch(full.model, full.tokenizer, [(QUESTION, ANSWERS[0], ANSWERS[1])])
    assert "token_type_ids" not in batch and torch.isfinite(full.model(**batch).logits).all()


# -- real packaged models (slow) -------------------------------------------------------------------- #

@pytest.mark.slow
def test_real_smollm2_loads_as_a_ranker_backbone():
    model, tokenizer = PairRankerModel.from_backbone("smollm2", source_max_length=32, candidate_max_length=32,
                                                     head_hidden_size=16)
    assert model.config.pooling == "last" and model.config.encoder.hidden_size == 576
    with torch.no_grad():
        out = model.eval()(**_batch(model, tokenizer, [(QUESTION, ANSWERS[0], ANSWERS[1]), ("Hi", "Hello!", "No.")]))
    assert out.scores.shape == (2, 2) and torch.isfinite(out.logits).all()


@pytest.mark.slow
def test_real_mpnet_assembles_loads_and_ranks():
    model, tokenizer = PairRankerModel.from_backbone("mpnet", **SMALL)
    assert model.config.encoder.model_type == "mpnet" and model.config.encoder.hidden_size == 768
    assert sum(p.numel() for p in model.encoder.parameters()) > 108_000_000  # 109.5M less the unused pooler
    assert tokenizer.cls_token == "<s>" and tokenizer.sep_token == "</s>"
    [result] = Ranker(model.eval(), tokenizer).rank(QUESTION, ANSWERS)
    assert sorted(result.ranks) == [1, 2, 3, 4]
    PairRankerConfig(encoder=model.config.encoder.to_dict())            # default budgets (503) fit 512 positions
