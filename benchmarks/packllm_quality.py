"""PackLLM quality: perplexity of the reference answer under each member and each weighting.

    python benchmarks/packllm_quality.py [--eval VAL] [--models smollm2 gemma3-270m] [--limit N]

Per row, prompt = the instruction (plus input); weights are solved on the prompt alone, then the fused
model scores the reference answer `output` (text: prompt, a blank line, answer; full vocabulary, in
the primary member's tokens). Prints JSON: per method the corpus perplexity of the references
(exp of the token-weighted mean NLL), the mean per-row perplexity, the mean prompt perplexity, how
often the method beats the best single member on a row, and the per-row robustness figures: the
ratio of the row's perplexity to that of the row's best member (share of rows above 1.10, the worst
ratio, the mean ratio). The paper's claim under test: perplexity-based weights beat uniform and the
best single member; the robustness goal: no row more than 10 % worse than its best member.
For `exact` it also lists the worst rows (prompt length, weights, ratio) and the solve time.
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
    parser.add_argument("--move", type=float, default=None, help="shrunk weighting's move (default: the library's)")
    parser.add_argument("--output", default=None, help="also write metrics.json here")
    args = parser.parse_args()

    import torch
    from tqdm.auto import tqdm

    from blendkit.core.text import source_text
    from blendkit.data import load_mixinstruct
    from blendkit.packllm import PackLLMGenerator
    from blendkit.packllm.scoring import continuation_logprobs, fused_nll, prompt_logprobs
    from blendkit.packllm.weights import SHRUNK_MOVE, objective, solve

    data = load_mixinstruct(args.eval, min_candidates=0, require_output=True, limit=args.limit).dataset
    generator = PackLLMGenerator.from_pretrained(args.models, tau=args.tau, top_m=args.top_m)
    members = generator.members
    k = len(members)
    move = SHRUNK_MOVE if args.move is None else args.move
    weightings = ["uniform", "sim", "greedy", "exact", "shrunk"]
    methods = [f"member:{m.name}" for m in members] + weightings
    nll_sum = {m: 0.0 for m in methods}
    row_ppl = {m: [] for m in methods}
    prompt_ppl = {m: [] for m in methods}
    row_info = []                          # per row: prompt positions, exact weights
    solve_seconds = {"exact": 0.0, "shrunk": 0.0}
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
        options = {"sim": {"tau": args.tau}, "shrunk": {"move": move}}
        for name in weightings:
            solve_start = time.perf_counter()
            weights[name] = solve(scores, name, **options.get(name, {}))
            if name in solve_seconds:
                solve_seconds[name] += time.perf_counter() - solve_start
        row_info.append({"id": row.get("id"), "prompt_positions": scores.logp.shape[1],
                         "exact_weights": [round(float(w), 3) for w in weights["exact"]]})
        for name, w in weights.items():
            nll, count = fused_nll(answer, w)
            nll_sum[name] += nll * count
            row_ppl[name].append(math.exp(nll))
            prompt_ppl[name].append(math.exp(objective(scores, w.double())))
        tokens += count
    rows = len(row_ppl[methods[0]])
    best_single = min(methods[:k], key=lambda m: nll_sum[m])
    report = {"eval": args.eval, "rows": rows, "skipped": skipped, "reference_tokens": tokens,
              "members": [m.name for m in members], "tau": args.tau, "top_m": args.top_m, "move": move,
              "solve_ms_per_prompt": {k: round(v / max(rows, 1) * 1e3, 2) for k, v in solve_seconds.items()},
              "seconds": round(time.time() - start, 1), "best_single": best_single, "methods": {}}
    row_best = [min(row_ppl[m][i] for m in methods[:k]) for i in range(rows)]
    for name in methods:
        wins = sum(a < b - 1e-9 for a, b in zip(row_ppl[name], row_ppl[best_single]))
        ratios = [p / b for p, b in zip(row_ppl[name], row_best)]
        report["methods"][name] = {
            "reference_ppl": round(math.exp(nll_sum[name] / tokens), 3),
            "mean_row_reference_ppl": round(sum(row_ppl[name]) / rows, 3),
            "mean_prompt_ppl": round(sum(prompt_ppl[name]) / rows, 3),
            "rows_better_than_best_single": f"{wins}/{rows}",
            "share_rows_over_1.10x_best_member": round(sum(r > 1.10 for r in ratios) / rows, 3),
            "worst_row_ratio_to_best_member": round(max(ratios), 3),
            "mean_row_ratio_to_best_member": round(sum(ratios) / rows, 3)}
    exact_ratios = [p / b for p, b in zip(row_ppl["exact"], row_best)]
    worst = sorted(range(rows), key=lambda i: -exact_ratios[i])[:5]
    report["exact_worst_rows"] = [{**row_info[i], "ratio": round(exact_ratios[i], 3),
                                   "member_row_ppl": [round(row_ppl[m][i], 2) for m in methods[:k]]} for i in worst]
    if args.output:
        from blendkit.core.atomic import atomic_open

        os.makedirs(args.output, exist_ok=True)
        with atomic_open(os.path.join(args.output, "metrics.json")) as f:
            json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
