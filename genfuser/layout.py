"""How every fuser input is laid out: opening, the instruction, then a header and the text of each candidate,
then the closing, each text cut to its own token budget. The two formatters differ only in the pieces:
marker tokens and the model's framing (seq2seq), or chat-template framing and plain-text headers (causal).
"""

from __future__ import annotations

from typing import Sequence

from ..core.markers import encode_user_text


def truncated_ids(tokenizer, texts: Sequence[str], budget: int) -> list[list[int]]:
    """Each text's token ids cut to ``budget``; marker or special-token strings inside the text stay text."""
    return [ids[:budget] for ids in encode_user_text(tokenizer, texts)]


def lay_out_sources(tokenizer, prompts: Sequence[str], candidate_lists: Sequence[Sequence[str]], *, top_k: int,
                    source_max_length: int, candidate_max_length: int, opening: list[int],
                    headers: Sequence[list[int]], closing: list[int]) -> list[list[int]]:
    """Input ids per row; ``candidate_lists[i]`` holds at most ``top_k`` texts, best first, and the k-th
    is preceded by ``headers[k]``."""
    for k, texts in enumerate(candidate_lists):
        if len(texts) > top_k:
            raise ValueError(f"row {k}: {len(texts)} candidates given but top_k={top_k}; select first.")
    prompt_ids = truncated_ids(tokenizer, prompts, source_max_length)
    flat = truncated_ids(tokenizer, [t for texts in candidate_lists for t in texts], candidate_max_length)
    sources, start = [], 0
    for ids, texts in zip(prompt_ids, candidate_lists):
        seq = [*opening, *ids]
        for k in range(len(texts)):
            seq += [*headers[k], *flat[start + k]]
        sources.append(seq + closing)
        start += len(texts)
    return sources
