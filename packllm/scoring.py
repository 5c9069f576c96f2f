"""One forward per member over a batch of texts → each member's next-token log-probs at the primary
member's token positions, on the primary vocabulary.

With a shared tokenizer every position is aligned. With different tokenizers, a position (the text
before primary token j) is kept only where every member has a token boundary at the same character
(most word boundaries); the others are dropped, so that every kept position has all K distributions.
`prompt_logprobs` turns these into the weight solvers' input; `continuation_nll` scores a continuation
(e.g. a reference answer) under the fused model with given weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .members import Member
from .weights import PromptLogProbs

PAD_LOGP = -1e4  # log-prob of padding columns in the support: exp() underflows to 0, λ·PAD_LOGP stays finite


@dataclass
class AlignedText:
    targets: torch.Tensor   # [T] primary token ids predicted at the kept positions
    logp: torch.Tensor      # [K, T, V_primary] members' log-probs at those positions
    starts: torch.Tensor    # [T] character offset where each predicted token starts


@torch.inference_mode()
def aligned_logprobs(members: Sequence[Member], texts: Sequence[str],
                     max_tokens: int | None = None) -> list[AlignedText]:
    """Members' log-probs at the primary's aligned positions, one `AlignedText` per text (each member
    reads at most ``max_tokens`` of its own tokens, and its model's position limit)."""
    primary = members[0]
    encodings = [_encode(member, texts, max_tokens) for member in members]
    outputs: list[list[torch.Tensor]] = []          # per member, per text: [L_k, V_primary] log-probs
    for member, encoding in zip(members, encodings):
        logits = member.model(input_ids=encoding["input_ids"].to(member.device),
                              attention_mask=encoding["attention_mask"].to(member.device)).logits
        lengths = encoding["attention_mask"].sum(dim=1)
        outputs.append([member.log_probs(logits[i, :lengths[i]]).float().cpu() for i in range(len(texts))])
    results = []
    for i in range(len(texts)):
        p_offsets = encodings[0]["offset_mapping"][i][:len(outputs[0][i])]
        # predicting primary token j (j ≥ 1) from the text up to the end of token j−1
        keep, sources = [], [[] for _ in members]
        boundary_maps = [_last_token_ending_at(e["offset_mapping"][i][:len(o[i])]) for e, o in zip(encodings, outputs)]
        for j in range(1, len(p_offsets)):
            end = int(p_offsets[j - 1][1])
            if int(p_offsets[j][0]) != end:         # token j starts inside a split character, or offsets skip text
                continue
            positions = [j - 1] + [boundary_maps[k].get(end) for k in range(1, len(members))]
            if any(p is None for p in positions):
                continue
            keep.append(j)
            for k, p in enumerate(positions):
                sources[k].append(p)
        ids = encodings[0]["input_ids"][i]
        logp = torch.stack([outputs[k][i][torch.tensor(sources[k], dtype=torch.long)] for k in range(len(members))]) \
            if keep else torch.zeros(len(members), 0, primary.primary_size)
        results.append(AlignedText(ids[torch.tensor(keep, dtype=torch.long)], logp,
                                   torch.tensor([int(p_offsets[j][0]) for j in keep], dtype=torch.long)))
    return results


def prompt_logprobs(members: Sequence[Member], prompts: Sequence[str], top_m: int | None = None,
                    max_tokens: int | None = 512) -> list[PromptLogProbs | None]:
    """The weight solvers' input for each prompt (see weights.py); None for a prompt with nothing to score
    (a single token, or no character boundary that all members share).

    ``top_m=None`` (default) keeps the whole vocabulary: the solvers then optimise the true prompt
    perplexity. An integer keeps, per position, the observed token, each member's ``top_m`` most likely
    tokens and one pooled column for the rest of each member's mass — much faster, exact at single
    members, but only an upper bound elsewhere, and a loose one when the members' distributions are
    flat (real prompts often are), so its optimum can differ from the true one. Only the first
    ``max_tokens`` tokens of a prompt are scored (its perplexity is estimated from its beginning).
    """
    results = []
    for aligned in aligned_logprobs(members, prompts, max_tokens):
        results.append(_support(aligned, top_m) if aligned.targets.numel() else None)
    return results


def continuation_logprobs(members: Sequence[Member], prompts: Sequence[str], continuations: Sequence[str],
                          separator: str = "\n\n") -> list[AlignedText]:
    """Members' log-probs on each continuation's tokens after its prompt (text: prompt + separator + continuation)."""
    texts = [p + separator + c for p, c in zip(prompts, continuations)]
    out = []
    for prompt, aligned in zip(prompts, aligned_logprobs(members, texts)):
        part = aligned.starts >= len(prompt) + len(separator)
        out.append(AlignedText(aligned.targets[part], aligned.logp[:, part], aligned.starts[part]))
    return out


def fused_nll(aligned: AlignedText, weights: torch.Tensor) -> tuple[float, int]:
    """Mean NLL per token of the fused model with ``weights`` [K] (full vocabulary), and the token count."""
    if aligned.targets.numel() == 0:
        return float("nan"), 0
    mixed = torch.einsum("k,ktv->tv", weights.float(), aligned.logp)
    token_nll = torch.logsumexp(mixed, dim=1) - mixed.gather(1, aligned.targets[:, None])[:, 0]
    return float(token_nll.mean()), int(token_nll.numel())


def continuation_nll(members: Sequence[Member], prompts: Sequence[str], continuations: Sequence[str],
                     weights: torch.Tensor, separator: str = "\n\n") -> tuple[torch.Tensor, torch.Tensor]:
    """Fused mean NLL per token of each continuation after its prompt, with ``weights`` [B, K].

    Returns the mean NLL per row [B] and the number of scored tokens [B].
    """
    results = [fused_nll(a, w) for a, w in zip(continuation_logprobs(members, prompts, continuations, separator),
                                              weights)]
    return torch.tensor([r[0] for r in results]), torch.tensor([r[1] for r in results])


def _encode(member: Member, texts: Sequence[str], max_tokens: int | None = None) -> dict:
    tokenizer = member.tokenizer
    limit = min(max_tokens or member.max_positions, member.max_positions)
    side, truncation_side = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = "right"                 # scoring: real tokens keep positions 0..n-1
    tokenizer.truncation_side = "right"              # and a long text is scored from its start
    try:
        return tokenizer(list(texts), return_tensors="pt", padding=True, return_offsets_mapping=True,
                         truncation=True, max_length=limit)
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, truncation_side


def _last_token_ending_at(offsets: torch.Tensor) -> dict[int, int]:
    """char offset → index of the last token that ends there (its next-token distribution follows that text)."""
    ends: dict[int, int] = {}
    for index, (_, end) in enumerate(offsets.tolist()):
        ends[end] = index
    return ends


def _support(aligned: AlignedText, top_m: int | None) -> PromptLogProbs:
    """The whole vocabulary, or: observed token first, the members' top tokens (deduplicated), the pooled rest."""
    logp = aligned.logp
    targets = aligned.targets
    members, positions, vocab = logp.shape
    if top_m is None or top_m * members + 1 >= vocab:
        return PromptLogProbs(logp, targets)                                          # the whole vocabulary
    top = logp.topk(top_m, dim=2).indices.permute(1, 0, 2).reshape(positions, -1)     # [T, K·m]
    index = torch.cat([targets[:, None], top], dim=1)                                 # [T, 1 + K·m]
    duplicate = _repeated(index)
    chosen = logp.gather(2, index.unsqueeze(0).expand(members, -1, -1))               # [K, T, S]
    chosen = chosen.masked_fill(duplicate.unsqueeze(0), PAD_LOGP)
    mass = torch.exp(chosen).sum(dim=2).clamp(max=1.0)
    rest = torch.log1p(-mass.clamp(max=1 - 1e-7)).clamp_min(PAD_LOGP)                # pooled remaining mass
    return PromptLogProbs(torch.cat([chosen, rest.unsqueeze(2)], dim=2).double())


def _repeated(index: torch.Tensor) -> torch.Tensor:
    """True where a row's entry repeats an earlier entry of that row."""
    values, order = torch.sort(index, dim=1, stable=True)
    first = torch.ones_like(values, dtype=torch.bool)
    first[:, 1:] = values[:, 1:] != values[:, :-1]
    repeated = torch.empty_like(first)
    repeated.scatter_(1, order, ~first)
    return repeated
