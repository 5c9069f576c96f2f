"""The causal fuser's prompt: the instruction and the top-K candidates in one user turn; the answer follows.

    <chat template: system, user turn opens>Combine the candidate answers ... one answer.

    Instruction:
    {instruction}

    Answer 1:
    {best candidate}
    ...
    Answer K:
    {K-th candidate}

    Reply with the combined answer only.<user turn closes, assistant turn opens>{reference output}<end of turn>

Why plain-text headers ("Answer 1:") and not added marker tokens as the seq2seq fuser has: a pretrained
instruction-tuned LM already reads such a prompt, so the untrained model fuses sensibly (the zero-shot
baseline uses this very prompt) and fine-tuning starts from there. New tokens would start as
untrained embedding rows; LoRA does not train embeddings (only adding the embedding matrix to
``modules_to_save`` would, at 28M extra trainable weights for SmolLM2's tied 49k x 576 table), so the
markers would stay what they were initialised to. A header can never be split by truncation either:
headers sit outside the per-part budgets, as whole pieces.

Each part is tokenized on its own and cut to its budget (``source_max_length``,
``candidate_max_length``; the answer to ``target_max_length``), so every candidate keeps its share
however long the others are. User text goes through ``encode_user_text``: "<|im_end|>" or any other
special-token string inside an answer stays text and cannot close the turn. With a chat template the
prompt is wrapped in it (its framing tokens are found by rendering a placeholder message); without
one, a plain "Combined answer:" line ends the prompt.

Training rows are laid out ``[pad ...][prompt][answer][pad ...]``: prompts left-padded to one width
(exactly as generation pads them), answers right-padded after it. The labels are -100 on the prompt
and padding, so the loss covers the answer tokens only, and logits are computed for the answer
columns alone (``logits_to_keep``), sparing the vocabulary projection on the prompt. An answer that
fits ends with the end-of-turn token; a reference cut at ``target_max_length`` gets none, so the model
is never taught to stop mid-sentence. Generation left-pads the prompts, uses the KV cache, stops at
EOS / end-of-turn and decodes only the new tokens.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ..core.errors import ConfigError
from ..core.markers import encode_user_text
from .config import FuserSettings
from .layout import lay_out_sources

TASK = ("Combine the candidate answers below into one answer to the instruction: keep what is correct and useful "
        "in them, leave out their mistakes and repetitions.")
INSTRUCTION_HEADER = "\n\nInstruction:\n"
CLOSING = "\n\nReply with the combined answer only."
NO_TEMPLATE_ANSWER = "\n\nCombined answer:\n"
_PLACEHOLDER = "@@blendkit-fuser-placeholder@@"


def answer_header(k: int) -> str:
    """The plain-text marker before the k-th candidate (1-based, best first)."""
    return f"\n\nAnswer {k}:\n"


class CausalFuserFormatter:
    """Encodes a causal fuser's prompts and answers with the budgets of :class:`FuserSettings` (keywords).
    ``max_positions``: the model's position limit, checked against the longest prompt plus answer."""

    def __init__(self, tokenizer, max_positions: int | None = None, **settings):
        self.settings = s = FuserSettings(**settings)
        self.tokenizer = tokenizer
        self.top_k, self.source_max_length = s.top_k, s.source_max_length
        self.candidate_max_length, self.target_max_length = s.candidate_max_length, s.target_max_length
        self.opening, self.closing, end_of_turn = _frame(tokenizer)
        self.task = self._text_ids(TASK + INSTRUCTION_HEADER)
        self.headers = [self._text_ids(answer_header(k)) for k in range(1, s.top_k + 1)]
        eos = tokenizer.eos_token_id
        self.end_of_turn = end_of_turn if end_of_turn is not None else eos
        if self.end_of_turn is None:
            raise ConfigError("this causal fuser's tokenizer has no eos_token and its chat template no end-of-turn "
                              "token: the fuser could not learn where an answer ends.")
        self.stop_ids = sorted({self.end_of_turn, *([eos] if eos is not None else [])})
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_of_turn
        if max_positions is not None and self.source_length + s.target_max_length > max_positions:
            raise ConfigError(f"the longest prompt ({self.source_length} tokens: source_max_length + top_k * "
                              f"candidate_max_length + headers) plus target_max_length={s.target_max_length} "
                              f"exceeds the model's {max_positions} positions; got source_max_length="
                              f"{s.source_max_length}, candidate_max_length={s.candidate_max_length}, top_k={s.top_k}.")

    def _text_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def source_length(self) -> int:
        """Longest possible prompt."""
        return (len(self.opening) + len(self.task) + self.source_max_length + sum(map(len, self.headers))
                + self.top_k * self.candidate_max_length + len(self.closing))

    def encode_sources(self, prompts: Sequence[str], candidate_lists: Sequence[Sequence[str]]) -> list[list[int]]:
        """Prompt ids; ``candidate_lists[i]`` holds at most ``top_k`` texts, best first."""
        return lay_out_sources(self.tokenizer, prompts, candidate_lists, top_k=self.top_k,
                               source_max_length=self.source_max_length,
                               candidate_max_length=self.candidate_max_length,
                               opening=[*self.opening, *self.task], headers=self.headers, closing=self.closing)

    def encode_targets(self, texts: Sequence[str]) -> list[list[int]]:
        """Answer ids, ending with the end-of-turn token when the whole text fits ``target_max_length``."""
        out = []
        for ids in encode_user_text(self.tokenizer, texts):
            out.append(ids + [self.end_of_turn] if len(ids) < self.target_max_length else ids[:self.target_max_length])
        return out

    def collate(self, sources: Sequence[list[int]], targets: Sequence[list[int]] | None = None,
                ) -> dict[str, torch.Tensor | int]:
        """Model inputs: left-padded prompts (as generation takes them); with ``targets``, a training batch
        (answers after the prompts, labels on the answers only, logits kept for the answer columns)."""
        width = max(len(s) for s in sources)
        answer_width = max(len(t) for t in targets) if targets is not None else 0
        input_ids = torch.full((len(sources), width + answer_width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for k, seq in enumerate(sources):
            input_ids[k, width - len(seq):width] = torch.tensor(seq)
            attention_mask[k, width - len(seq):width] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if targets is None:
            return batch
        # Logits of the columns width-1 ... end; label column j is the token logits column j-1 predicts.
        labels = torch.full((len(sources), answer_width + 1), -100, dtype=torch.long)
        for k, seq in enumerate(targets):
            input_ids[k, width:width + len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention_mask[k, width:width + len(seq)] = 1
            labels[k, 1:1 + len(seq)] = torch.tensor(seq, dtype=torch.long)
        # Positions count real tokens only, so a left-padded prompt sits where it would unpadded.
        batch["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        batch.update(labels=labels, logits_to_keep=answer_width + 1)
        return batch

    def generate(self, model, sources: Sequence[list[int]], **options) -> list[str]:
        """Greedy (or as ``options`` say) answers to prompts, decoded from the new tokens only."""
        device = next(model.parameters()).device
        batch = {name: tensor.to(device) for name, tensor in self.collate(sources).items()}
        options = {"eos_token_id": self.stop_ids, "pad_token_id": self.pad_id, "use_cache": True, **options}
        size = options.pop("no_repeat_ngram_size", 0) or 0
        if size > 0:   # generate()'s own check would also ban n-grams of the prompt: copying must stay allowed
            no_repeat = NewTokensNoRepeatNGram(size, batch["input_ids"].shape[1])
            options["logits_processor"] = LogitsProcessorList([*options.get("logits_processor", []), no_repeat])
        output = model.generate(**batch, **options)
        return [text.strip() for text in
                self.tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)]


class NewTokensNoRepeatNGram(LogitsProcessor):
    """``no_repeat_ngram_size`` over the generated tokens alone: the answer may repeat the prompt's n-grams
    (a fuser should copy good spans of its inputs) but not its own."""

    def __init__(self, size: int, prompt_width: int):
        self.size, self.prompt_width = size, prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        n = self.size
        for row, ids in enumerate(input_ids[:, self.prompt_width:].tolist()):
            if len(ids) < n:
                continue
            prefix = tuple(ids[len(ids) - n + 1:])
            banned = [ids[i + n - 1] for i in range(len(ids) - n + 1) if tuple(ids[i:i + n - 1]) == prefix]
            scores[row, banned] = float("-inf")
        return scores


def _frame(tokenizer) -> tuple[list[int], list[int], int | None]:
    """(ids before the user's text, ids after it up to where the answer starts, the end-of-turn id) of the
    tokenizer's chat template; without a template: the tokenizer's own leading tokens (BOS) and a plain
    "Combined answer:" line, and no end-of-turn token beyond EOS."""
    if not getattr(tokenizer, "chat_template", None):
        plain = tokenizer("fuse", add_special_tokens=False)["input_ids"]
        framed = tokenizer("fuse", add_special_tokens=True)["input_ids"]
        before = framed[:framed.index(plain[0])] if plain and plain[0] in framed else []
        return before, tokenizer(CLOSING + NO_TEMPLATE_ANSWER, add_special_tokens=False)["input_ids"], None
    try:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": _PLACEHOLDER}], tokenize=False,
                                               add_generation_prompt=True)
        turn = tokenizer.apply_chat_template([{"role": "user", "content": "question"},
                                              {"role": "assistant", "content": _PLACEHOLDER}], tokenize=False)
    except Exception as error:  # templates raise their own errors (e.g. jinja2 TemplateError)
        raise ConfigError(f"the tokenizer's chat_template cannot render a user/assistant exchange ({error}); "
                          "fix or remove tokenizer.chat_template.") from None
    if prompt.count(_PLACEHOLDER) != 1 or turn.count(_PLACEHOLDER) != 1:
        raise ConfigError("the tokenizer's chat_template does not render a message's content exactly once.")
    before, after = prompt.split(_PLACEHOLDER)

    def ids(text: str) -> list[int]:   # template text: its special-token strings are meant as tokens
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    after_answer = ids(turn.split(_PLACEHOLDER)[1])
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    end_of_turn = after_answer[0] if after_answer and after_answer[0] in special else None
    return ids(before), ids(CLOSING) + ids(after), end_of_turn
