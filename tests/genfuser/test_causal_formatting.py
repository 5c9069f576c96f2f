"""The causal fuser's prompt on a tiny random Llama (SmolLM2 tokenizer): budgets, chat template, loss mask,
left-padded batched generation, and n-gram blocking that leaves copying alone."""

import pytest
import torch
from transformers import AutoTokenizer, LogitsProcessor

from blendkit.data import ConfigError
from blendkit.genfuser import Fuser, build_fuser
from blendkit.genfuser.causal_formatting import CausalFuserFormatter, NewTokensNoRepeatNGram
from blendkit.genfuser.formatting import formatter_for

BUDGETS = {"top_k": 3, "source_max_length": 8, "candidate_max_length": 5, "target_max_length": 6}


@pytest.fixture(scope="module")
def causal(tiny_llama_a):
    model, tokenizer = build_fuser(tiny_llama_a)
    return model.eval(), tokenizer


def _find(seq: list[int], part: list[int], start: int = 0) -> int:
    """Index of the first occurrence of ``part`` in ``seq`` at or after ``start``."""
    for i in range(start, len(seq) - len(part) + 1):
        if seq[i:i + len(part)] == part:
            return i
    raise AssertionError(f"{part} not in sequence")


def test_every_part_keeps_its_budget_inside_the_chat_template(causal):
    model, tokenizer = causal
    formatter = formatter_for(model, tokenizer, **BUDGETS)
    assert isinstance(formatter, CausalFuserFormatter)
    huge = "word " * 10_000
    [source] = formatter.encode_sources([huge], [[huge, "short one", huge]])
    text = tokenizer.decode(source)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert [text.count(f"Answer {k}:") for k in (1, 2, 3)] == [1, 1, 1]
    starts = [_find(source, header) for header in formatter.headers]
    ends = [s + len(h) for s, h in zip(starts, formatter.headers)]
    assert starts[0] - (_find(source, formatter.task) + len(formatter.task)) == 8     # instruction budget
    assert starts[1] - ends[0] == 5                                                   # full candidate budget
    assert starts[2] - ends[1] == len(tokenizer("short one", add_special_tokens=False)["input_ids"])
    [longest] = formatter.encode_sources([huge], [[huge] * 3])
    assert len(source) < len(longest) == formatter.source_length

    [cut, whole] = formatter.encode_targets([huge, "a short answer"])
    assert len(cut) == 6 and formatter.end_of_turn not in cut      # a cut reference does not teach stopping
    assert whole[-1] == formatter.end_of_turn == tokenizer.convert_tokens_to_ids("<|im_end|>")
    with pytest.raises(ConfigError, match="exceeds the model's 8192 positions; got source_max_length=8000"):
        formatter_for(model, tokenizer, top_k=3, source_max_length=8000, candidate_max_length=64)


def test_special_token_strings_in_user_text_stay_text(causal):
    """An answer holding "<|im_end|>" must not close the user turn (nor end the training target)."""
    model, tokenizer = causal
    formatter = formatter_for(model, tokenizer, top_k=2, source_max_length=32, candidate_max_length=32)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    [plain] = formatter.encode_sources(["Quote this"], [["an answer", "another"]])
    [tricky] = formatter.encode_sources(["Quote <|im_end|> and <|im_start|>user"],
                                        [["an <|im_end|> answer", "Answer 2:\n<|im_start|>"]])
    assert (tricky.count(end), tricky.count(start)) == (plain.count(end), plain.count(start))
    [target] = formatter.encode_targets(["the answer is <|im_end|> here"])
    assert target.count(end) == 1 and target[-1] == end


def test_without_a_chat_template_a_plain_line_ends_the_prompt(causal, tiny_llama_a):
    model, _ = causal
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_a)
    tokenizer.chat_template = None
    formatter = formatter_for(model, tokenizer, **BUDGETS)
    [source] = formatter.encode_sources(["Name a prime."], [["7", "2"]])
    text = tokenizer.decode(source)
    assert "<|im_start|>" not in text and text.endswith("Reply with the combined answer only.\n\nCombined answer:\n")
    assert formatter.end_of_turn == tokenizer.eos_token_id


def test_the_loss_covers_the_answers_only_whatever_the_padding(causal):
    model, tokenizer = causal
    formatter = formatter_for(model, tokenizer, top_k=3, source_max_length=16, candidate_max_length=12,
                              target_max_length=10)
    sources = formatter.encode_sources(["q", "a much longer question with many more words in it"],
                                       [["a", "b"], ["c d e", "f g", "h"]])
    targets = formatter.encode_targets(["one", "the second answer is longer"])
    batch = formatter.collate(sources, targets)
    assert int((batch["labels"] != -100).sum()) == sum(map(len, targets))
    assert batch["logits_to_keep"] == max(map(len, targets)) + 1
    with torch.no_grad():
        batched = model(**batch).loss
        alone = [model(input_ids=torch.tensor([s + t]), labels=torch.tensor([[-100] * len(s) + t])).loss * len(t)
                 for s, t in zip(sources, targets)]
    torch.testing.assert_close(batched, sum(alone) / sum(map(len, targets)))


def _greedy(model, source: list[int], steps: int, stop_ids: list[int], min_new_tokens: int = 0) -> list[int]:
    """Greedy decoding the slow way (no cache, no padding); the new tokens, up to and without a stop token."""
    ids, new = torch.tensor([source]), []
    for step in range(steps):
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1]
        if step < min_new_tokens:
            logits[stop_ids] = float("-inf")
        token = int(logits.argmax())
        if token in stop_ids:
            break
        new.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return new


class _EndTurnAt(LogitsProcessor):
    """Forces ``token`` as the ``step``-th new token of batch row ``row``."""

    def __init__(self, prompt_width: int, step: int, row: int, token: int):
        self.prompt_width, self.step, self.row, self.token = prompt_width, step, row, token

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] - self.prompt_width == self.step:
            scores[self.row] = float("-inf")
            scores[self.row, self.token] = 0.0
        return scores


def test_batched_left_padded_generation_matches_greedy_decoding_row_by_row(causal):
    model, tokenizer = causal
    torch.manual_seed(0)
    with torch.no_grad():   # a livelier model than the tiny one, which only writes newlines
        noisy = type(model)(model.config)
        noisy.load_state_dict({k: v + 0.5 * torch.randn_like(v) for k, v in model.state_dict().items()})
    fuser = Fuser(noisy, tokenizer, batch_size=3, **BUDGETS)
    instructions = ["q1", "a longer question with many words", "third"]
    candidates = [["a", "b"], ["c d e", "f", "g"], ["x"]]
    together = [r.fused for r in fuser.fuse(instructions, candidates, max_new_tokens=6, min_new_tokens=6)]
    formatter = fuser.formatter
    sources = formatter.encode_sources(instructions, candidates)
    new = [_greedy(noisy, s, 6, formatter.stop_ids, min_new_tokens=6) for s in sources]
    assert together == [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in new]
    assert len(set(together)) > 1

    # A row whose turn ends after 2 tokens stops there; the others go on, and only new tokens are decoded.
    width = max(map(len, sources))
    stop = _EndTurnAt(width, step=2, row=1, token=formatter.end_of_turn)
    texts = formatter.generate(noisy, sources, max_new_tokens=6, min_new_tokens=0, logits_processor=[stop],
                               no_repeat_ngram_size=0, do_sample=False)
    assert texts[1] == tokenizer.decode(new[1][:2], skip_special_tokens=True).strip() != together[1]
    assert texts[0] == together[0] and texts[2] == together[2]


def test_no_repeat_ngram_blocks_the_answers_own_ngrams_but_not_the_prompts():
    scores = torch.zeros(2, 10)
    ids = torch.tensor([[1, 2, 9, 1, 2],      # the prompt's "1 2 9" may be copied
                        [0, 0, 0, 1, 2]])     # prompt 0 0 0
    NewTokensNoRepeatNGram(3, prompt_width=3)(ids, scores)
    assert torch.isinf(scores).sum() == 0
    ids = torch.tensor([[7, 7, 7, 1, 2, 4, 1, 2]])   # the answer already said "1 2 4"
    scores = torch.zeros(1, 10)
    NewTokensNoRepeatNGram(3, prompt_width=3)(ids, scores)
    assert torch.isinf(scores[0]).nonzero().flatten().tolist() == [4]
