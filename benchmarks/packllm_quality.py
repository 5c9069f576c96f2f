"""PackLLM quality: perplexity of the reference answer under each member and each weighting.

    python benchmarks/packllm_quality.py [--eval VAL] [--models smollm2 gemma3-270m] [--limit N]

Per row, prompt = the instruction (plus input); weights are solved on the prompt alone, then the fused
model scores the reference answer `output` (text: prompt, a blank line, answer; full vocabulary, in
the primary member's tokens). Prints JSON: per method the corpus perplexity of the references
(exp of the token-weighted mean NLL), the mean per-row perplexity, the mean prompt perplexity, and
how often the method beats the best single member on a row. The paper's claim under test:
perplexity-based weights beat uniform and the best single member.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

from common import SHARED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", default=os.path.join(SHARED, "val.jsonl.gz"))
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3-270m"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-reference-chars", type=int, default=2000, help="cut long references (speed)")
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--top-m", type=int, default=None, help="truncated support (default: whole vocabulary)")
    parser.add_argument("--output", default=None, help="also write metrics.json here")
    args = parser.parse_args()

    import torch
    from tqdm.auto import tqdm

    from blendkit.core.text import source_text
    from blendkit.data import load_mixinstruct
    from blendkit.packllm import PackLLMGenerator
    from blendkit.packllm.scoring import continuation_logprobs, fused_nll, prompt_logprobs
    from blendkit.packllm.weights import objective, solve

    data = load_mixinstruct(args.eval, min_candidates=0, require_output=True, limit=args.limit).dataset
    generator = PackLLMGenerator.from_pretrained(args.models, tau=args.tau, top_m=args.top_m)
    members = generator.members
    k = len(members)
    methods = [f"member:{m.name}" for m in members] + ["uniform", "sim", "greedy", "exact"]
    nll_sum = {m: 0.0 for m in methods}
    row_ppl = {m: [] for m in methods}
    prompt_ppl = {m: [] for m in methods}
    tokens = 0
    skipped = 0
    start = time.time()
    for row in tqdm(data, desc="packllm quality", unit="row"):
        prompt = source_text(row["instruction"], row.get("input") or "")
        scores = prompt_logprobs(members, [prompt], args.top_m)[0]
        answer = continuation_logprobs(members, [prompt], [row["output"][:args.max_reference_chars]])[0]
        if scores is None or answer.targets.numel() == 0:
            skipped += 1
            continue
        weights = {f"member:{m.name}": torch.eye(k)[i] for i, m in enumerate(members)}
        options = {"sim": {"tau": args.tau}}
        for name in ("uniform", "sim", "greedy", "exact"):
            weights[name] = solve(scores, name, **options.get(name, {}))
        for name, w in weights.items():
            nll, count = fused_nll(answer, w)
            nll_sum[name] += nll * count
            row_ppl[name].append(math.exp(nll))
            prompt_ppl[name].append(math.exp(objective(scores, w.double())))
        tokens += count
    rows = len(row_ppl[methods[0]])
    best_single = min(methods[:k], key=lambda m: nll_sum[m])
    report = {"eval": args.eval, "rows": rows, "skipped": skipped, "reference_tokens": tokens,
              "members": [m.name for m in members], "tau": args.tau, "top_m": args.top_m,
              "seconds": round(time.time() - start, 1), "best_single": best_single, "methods": {}}
    for name in methods:
        wins = sum(a < b - 1e-9 for a, b in zip(row_ppl[name], row_ppl[best_single]))
        report["methods"][name] = {
            "reference_ppl": round(math.exp(nll_sum[name] / tokens), 3),
            "mean_row_reference_ppl": round(sum(row_ppl[name]) / rows, 3),
            "mean_prompt_ppl": round(sum(prompt_ppl[name]) / rows, 3),
            "rows_better_than_best_single": f"{wins}/{rows}"}
    if args.output:
        from blendkit.core.atomic import atomic_open

        os.makedirs(args.output, exist_ok=True)
        with atomic_open(os.path.join(args.output, "metrics.json")) as f:
            json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
