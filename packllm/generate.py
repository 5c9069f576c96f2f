"""PackLLMGenerator: weights per prompt, then fused decoding with one KV cache per member.

Per decoding step every member runs one forward on the tokens that are new to it (one token on the
shared-vocabulary fast path), its next-token log-probs are carried to the primary vocabulary, and the
fused distribution is  log p = Σ_k λ_k log p_k  (renormalised), from which the next primary token is
picked greedily or sampled (temperature, top-p). Prompts are batched with left padding; each row
stops on its own (EOS, a stop string, or max_new_tokens).

Members that do not share the primary's tokenizer are fed the *text* of each new primary token
(re-tokenised with their own tokenizer; characters split over byte tokens wait until complete), so
every member always reads the same text.

    gen = PackLLMGenerator.from_pretrained(["smollm2", "gemma3-270m"])          # weighting="shrunk" (default)
    gen.weights(["Name three primes."])            # [1, 2], rows on the simplex
    gen.generate(["Name three primes."], max_new_tokens=64)[0].text
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .members import Member
from .scoring import prompt_logprobs
from .weights import SHRUNK_MOVE, WEIGHTINGS, solve


@dataclass
class Generation:
    text: str
    weights: list[float]
    tokens: int
    finish_reason: str                      # "eos" | "stop" | "length"
    token_ids: list[int] = field(repr=False, default_factory=list)


class PackLLMGenerator:
    def __init__(self, members: Sequence[Member], weighting: str = "shrunk", tau: float = 0.1, grid_step: float = 0.1,
                 top_m: int | None = None, chat: bool = True, move: float = SHRUNK_MOVE):
        """``weighting`` (see weights.py): the default `shrunk` is the exact prompt optimum pulled back toward
        the primary member (``move`` of the way from it), which keeps the corpus gain of `exact` without its
        per-answer losses (benchmarks/packllm_quality.py)."""
        if not members:
            raise ValueError("PackLLMGenerator needs at least one member model")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
        if not 0 <= move <= 1:
            raise ValueError(f"move (shrunk weighting) must be in [0, 1], got {move}")
        self.members = list(members)
        self.weighting, self.tau, self.grid_step, self.top_m, self.chat = weighting, tau, grid_step, top_m, chat
        self.move = move
        self.primary = self.members[0]

    @classmethod
    def from_pretrained(cls, names_or_paths: Sequence[str], weighting: str = "shrunk", device: str = "cpu",
                        dtype: torch.dtype | None = None, **options) -> "PackLLMGenerator":
        """Members by Hub id, local folder or packaged alias (smollm2, gemma3-270m); the first is the primary."""
        primary = Member.load(names_or_paths[0], device=device, dtype=dtype)
        others = [Member.load(n, primary.tokenizer, device=device, dtype=dtype) for n in names_or_paths[1:]]
        return cls([primary, *others], weighting=weighting, **options)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def weights(self, prompts: Sequence[str], weighting: str | None = None, batch_size: int = 8) -> torch.Tensor:
        """λ per prompt [B, K], solved on each prompt's own perplexity (the raw prompt, no chat template).

        A prompt with nothing to score (one token) gets uniform weights.
        """
        weighting = weighting or self.weighting
        if len(self.members) == 1 or weighting == "uniform":
            return torch.full((len(prompts), len(self.members)), 1.0 / len(self.members))
        options = {"sim": {"tau": self.tau}, "greedy": {"grid_step": self.grid_step},
                   "shrunk": {"move": self.move}}.get(weighting, {})
        uniform = torch.full((len(self.members),), 1.0 / len(self.members))
        rows = []
        for start in range(0, len(prompts), batch_size):
            for scores in prompt_logprobs(self.members, prompts[start:start + batch_size], self.top_m):
                rows.append(uniform if scores is None else solve(scores, weighting, **options))
        return torch.stack(rows)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 128, min_new_tokens: int = 0,
                 do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, stop: Sequence[str] = (), seed: int | None = None,
                 weights: torch.Tensor | None = None, batch_size: int = 8, progress: bool = False) -> list[Generation]:
        """Fused generations for ``prompts`` (weights solved per prompt unless given as [B, K]).

        Greedy unless ``do_sample``; EOS is blocked for the first ``min_new_tokens``; a row stops at
        EOS, at the first of the ``stop`` strings (cut from the text) or after ``max_new_tokens``.
        """
        if do_sample and temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if weights is None:
            weights = self.weights(prompts, batch_size=batch_size)
        elif tuple(weights.shape) != (len(prompts), len(self.members)):
            raise ValueError(f"weights must be [prompts, members] = [{len(prompts)}, {len(self.members)}], "
                             f"got {tuple(weights.shape)}")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        results: list[Generation] = []
        bar = tqdm(total=len(prompts), desc="packllm generate", unit="prompt", disable=not progress)
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            results += self._generate_batch(chunk, weights[start:start + batch_size], max_new_tokens,
                                            min_new_tokens, do_sample, temperature, top_p, list(stop), generator)
            bar.update(len(chunk))
        bar.close()
        return results

    # -- decoding ---------------------------------------------------------------------------------------

    def _generate_batch(self, prompts, weights, max_new_tokens, min_new_tokens, do_sample, temperature, top_p, stop,
                        generator):
        rows = len(prompts)
        states = [_MemberState(m, [m.format_prompt(p, self.chat) for p in prompts], self.primary.tokenizer,
                               add_special_tokens=not m.uses_template(self.chat),
                               max_prompt_tokens=max(1, m.max_positions - max_new_tokens)) for m in self.members]
        eos = torch.tensor(sorted(self.primary.eos_ids()), dtype=torch.long)
        lam = weights.float().to(self.primary.device)
        generated = [[] for _ in range(rows)]
        texts = [""] * rows
        reasons = ["length"] * rows
        finished = torch.zeros(rows, dtype=torch.bool)
        pad = self.primary.tokenizer.pad_token_id
        for step in range(max_new_tokens):
            fused = sum(lam[:, k, None] * state.logp for k, state in enumerate(states))
            if step < min_new_tokens:
                fused[:, eos.to(fused.device)] = float("-inf")
            token = _pick(fused, do_sample, temperature, top_p, generator).cpu()
            token[finished] = pad
            eos_ids = set(eos.tolist())
            for i in torch.nonzero(~finished).flatten().tolist():
                generated[i].append(int(token[i]))
                if int(token[i]) in eos_ids:
                    finished[i], reasons[i] = True, "eos"
                    generated[i].pop()
                    continue
                if stop:
                    texts[i] = self.primary.tokenizer.decode(generated[i], skip_special_tokens=True,
                                                             clean_up_tokenization_spaces=False)
                    cut = min((texts[i].find(s) for s in stop if s in texts[i]), default=-1)
                    if cut >= 0:
                        texts[i], finished[i], reasons[i] = texts[i][:cut], True, "stop"
                        _drop_tokens_past(generated[i], texts[i], self.primary.tokenizer)
            if finished.all():
                break
            for state in states:
                state.advance(token, generated, finished)
        out = []
        for i in range(rows):
            text = texts[i] if reasons[i] == "stop" else self.primary.tokenizer.decode(
                generated[i], skip_special_tokens=True, clean_up_tokenization_spaces=False)
            out.append(Generation(text, [round(float(w), 6) for w in weights[i]], len(generated[i]), reasons[i],
                                  generated[i]))
        return out


def _drop_tokens_past(ids: list[int], kept: str, tokenizer) -> None:
    """Keep the fewest leading tokens whose text starts with ``kept`` (the text before a stop string);
    the last kept token may hold the stop string's first characters. (A prefix that ends inside a
    character split over byte tokens decodes to U+FFFD, so it does not start with ``kept``.)"""
    while ids and tokenizer.decode(ids[:-1], skip_special_tokens=True,
                                   clean_up_tokenization_spaces=False).startswith(kept):
        ids.pop()


def _cache_name(model) -> str:
    """The KV cache's argument and output name: ``cache`` in recent transformers, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class _MemberState:
    """One member's KV cache, attention mask and latest next-token log-probs for a batch of rows."""

    def __init__(self, member: Member, texts: list[str], primary_tokenizer, add_special_tokens: bool = True,
                 max_prompt_tokens: int | None = None):
        self.member = member
        self.primary_tokenizer = primary_tokenizer
        tokenizer = member.tokenizer
        side, truncation_side = tokenizer.padding_side, tokenizer.truncation_side
        tokenizer.padding_side = "left"
        tokenizer.truncation_side = "left"         # a prompt too long for the model keeps its end (the question)
        try:
            encoding = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens,
                                 truncation=max_prompt_tokens is not None, max_length=max_prompt_tokens)
        finally:
            tokenizer.padding_side, tokenizer.truncation_side = side, truncation_side
        self.mask = encoding["attention_mask"].to(member.device)
        self.past = None
        self.cache_name = _cache_name(member.model)
        self.fed = [""] * len(texts)               # generated text already given to this member
        self.anchor = member.tokenizer.encode("\n", add_special_tokens=False)
        self.logp = self._forward(encoding["input_ids"].to(member.device))

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        # positions count real tokens only, as `generate` does with left padding
        positions = (self.mask.long().cumsum(-1) - 1).masked_fill(self.mask == 0, 1)[:, -ids.shape[1]:]
        out = self.member.model(input_ids=ids, attention_mask=self.mask, position_ids=positions, use_cache=True,
                                logits_to_keep=1, **{self.cache_name: self.past})
        self.past = getattr(out, self.cache_name)
        return self.member.log_probs(out.logits[:, -1])

    def _encode_piece(self, text: str) -> list[int]:
        return _encode_piece_after_anchor(self.member.tokenizer, self.anchor, text)

    def advance(self, token: torch.Tensor, generated: list[list[int]], finished: torch.Tensor) -> None:
        device = self.member.device
        if self.member.shares_vocabulary:
            self.mask = torch.cat([self.mask, torch.ones(len(token), 1, dtype=self.mask.dtype, device=device)], 1)
            self.logp = self._forward(token[:, None].to(device))
            return
        # another tokenizer: feed the new complete characters of each row as this member's own tokens
        pieces = []
        for i, ids in enumerate(generated):
            if finished[i]:
                pieces.append([])
                continue
            text = self.primary_tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            if text.endswith("\ufffd"):             # a character still split over byte tokens
                pieces.append([])
                continue
            delta, self.fed[i] = text[len(self.fed[i]):], text
            pieces.append(self._encode_piece(delta) if delta else [])
        width = max(len(p) for p in pieces)
        if width == 0:
            return
        pad = self.member.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in pieces], device=device)
        new_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in pieces], device=device)
        self.mask = torch.cat([self.mask, new_mask.to(self.mask.dtype)], 1)
        logp = self._forward(ids)
        moved = torch.tensor([len(p) > 0 for p in pieces], device=device)
        self.logp = torch.where(moved[:, None], logp, self.logp)


def _encode_piece_after_anchor(tokenizer, anchor: list[int], text: str) -> list[int]:
    """Tokens for ``text`` as a continuation: encoded after an anchor so that tokenizers which mark the
    start of every input (SentencePiece's "▁") do not add a space; without the anchor if it merged."""
    ids = tokenizer.encode(tokenizer.decode(anchor) + text, add_special_tokens=False)
    if ids[:len(anchor)] == anchor:
        return ids[len(anchor):]
    return tokenizer.encode(text, add_special_tokens=False)


def _pick(fused: torch.Tensor, do_sample: bool, temperature: float, top_p: float, generator) -> torch.Tensor:
    if not do_sample:
        return fused.argmax(dim=-1)
    logits = torch.log_softmax(fused / temperature, dim=-1)
    if top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.exp().cumsum(dim=-1)
        drop = cumulative - sorted_logits.exp() >= top_p          # keep the smallest set reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.exp().cpu()
    return torch.multinomial(probs, 1, generator=generator)[:, 0].to(fused.device)
