"""Candidates written by a PackLLM generator, added to MixInstruct rows (``blendkit generate`` and ``blend``).

A generated candidate looks like any other (``model``, ``decoding_method``, ``text``, empty
``scores``) plus a ``packllm`` record of the members, their weights, the token count and why it
stopped. Re-running replaces a row's earlier candidate of the same name instead of adding a second.
"""

from __future__ import annotations

import torch

from ..core.text import source_text
from ..data import candidate_record


def generated_candidate(name: str, generation, members: list[str], sampled: bool = False) -> dict:
    return {"model": name, "decoding_method": "sample" if sampled else "greedy", "text": generation.text,
            "scores": {}, "packllm": {"members": members, "weights": generation.weights,
                                      "tokens": generation.tokens, "finish_reason": generation.finish_reason}}


def add_generated_candidates(rows: list[dict], generator, fused: bool = True, members_alone: bool = False,
                             name: str | None = None, **generate) -> list:
    """Append to each row's ``candidates`` the generator's fused answer (named ``name``, default
    ``packllm-<weighting>``) and/or each member's own answer; returns the fused generations."""
    prompts = [source_text(r["instruction"], r.get("input") or "") for r in rows]
    weights = generator.weights(prompts, batch_size=generate.get("batch_size", 8))
    sampled = bool(generate.get("do_sample"))
    added: list[list[dict]] = [[] for _ in rows]
    outputs = []
    if fused:
        outputs = generator.generate(prompts, weights=weights, **generate)
        for k, out in enumerate(outputs):
            added[k].append(generated_candidate(name or f"packllm-{generator.weighting}", out, generator.names,
                                                sampled))
    if members_alone:
        for m, member in enumerate(generator.members):
            vertex = torch.zeros_like(weights)
            vertex[:, m] = 1.0
            for k, out in enumerate(generator.generate(prompts, weights=vertex, **generate)):
                added[k].append(generated_candidate(member.name, out, generator.names, sampled))
    for row, extra in zip(rows, added):
        names = {c["model"] for c in extra}
        kept = [candidate_record(c) for c in row.get("candidates") or [] if c["model"] not in names]
        row["candidates"] = kept + extra
    return outputs
