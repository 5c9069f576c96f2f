"""PackLLM speed: fused decoding cost against the members' own decoding, and the weight solvers' time.

    python benchmarks/packllm_speed.py [--models smollm2 smollm2-27l] [--new-tokens 48] [--batch 4]

1. Decode: per-token time of the fused generator divided by the sum of the members' own per-token
   times (each member alone through `transformers` `generate`), same prompts, batch and lengths, greedy,
   EOS blocked so every run makes exactly N tokens. Per-token time = (time for N tokens − time for 1
   token) / (N − 1), so the prompt's prefill cancels out. Goal: ratio ≤ 1.10. `smollm2-27l` is SmolLM2
   cut to its first 27 layers (a second member with the same tokenizer: the fast path); give
   `--models smollm2 gemma3-270m` for the mixed-vocabulary path.
2. Solvers: time per prompt of `exact` (certified on the whole vocabulary) and of `greedy`, on the
   members' real prompt log-probs and on synthetic K = 8 inputs (64 positions, 258-token support), one
   thread, best of 3 per prompt, building `PromptLogProbs` included (exact checks the values within its
   first pass; the full check that the other weightings run first is timed alone). Also: the
   certified bound f(λ) − min f at the returned weights (max over prompts), whole-support passes and
   Newton steps per prompt, and the largest f difference against a float64 solve to 1e-10.
   `--solvers-only` skips part 1. `--compare-solver FILE` also times another implementation of
   `packllm/weights.py` (e.g. `git show REV:packllm/weights.py > FILE`), interleaved with this one, and
   prints the ratio of the mean times.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from common import SHARED

PROMPTS = ["Explain why the sky is blue in two sentences.", "Write a short poem about autumn leaves.",
           "What are three tips for staying focused while studying?", "Describe how a bicycle works."]


def truncated_copy(alias: str, layers: int) -> str:
    """A member with the same tokenizer: the first ``layers`` layers of a packaged model (cached once)."""
    from blendkit.core.atomic import save_dir_atomically
    from blendkit.core.offline import cache_dir, resolve_model

    target = cache_dir() / f"{alias}-{layers}l"
    if not (target / "config.json").exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = resolve_model(alias)
        model = AutoModelForCausalLM.from_pretrained(source)
        model.model.layers = model.model.layers[:layers]
        model.config.num_hidden_layers = layers
        tokenizer = AutoTokenizer.from_pretrained(source)
        save_dir_atomically(str(target), lambda tmp: (model.save_pretrained(tmp), tokenizer.save_pretrained(tmp)))
    return str(target)


def _resolve(name: str) -> str:
    if name.endswith("l") and "-" in name and name.rsplit("-", 1)[1][:-1].isdigit():
        alias, layers = name.rsplit("-", 1)
        return truncated_copy(alias, int(layers[:-1]))
    return name


def _sci(value: float) -> float:
    return float(f"{value:.2e}")


def _timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2", "smollm2-27l"])
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings")
    parser.add_argument("--eval", default=os.path.join(SHARED, "val.jsonl.gz"), help="prompts for the solver timing")
    parser.add_argument("--solver-prompts", type=int, default=20)
    parser.add_argument("--solvers-only", action="store_true", help="skip the decoding timing (part 1)")
    parser.add_argument("--compare-solver", metavar="FILE", help="a weights.py to time against (part 2)")
    args = parser.parse_args()

    import torch

    from blendkit.packllm import Member

    primary = Member.load(_resolve(args.models[0]))
    members = [primary] + [Member.load(_resolve(n), primary.tokenizer) for n in args.models[1:]]
    for member, name in zip(members, args.models):
        member.name = name
    prompts = (PROMPTS * args.batch)[:args.batch]
    report = {"models": args.models, "batch": args.batch, "new_tokens": args.new_tokens,
              "threads": torch.get_num_threads()}
    if not args.solvers_only:
        _decoding(args, members, prompts, report)
    _solvers(args, members, report)
    print(json.dumps(report, indent=2))


def _decoding(args, members, prompts, report) -> None:
    """Part 1: fused decoding against the members' own `generate`, per token."""
    import torch

    from blendkit.packllm import Member, PackLLMGenerator

    primary = members[0]
    n = args.new_tokens
    fused = PackLLMGenerator(members)
    weights = torch.full((len(prompts), len(members)), 1.0 / len(members))   # weights are timed separately

    def run_fused(tokens: int):
        return lambda: fused.generate(prompts, max_new_tokens=tokens, min_new_tokens=tokens, weights=weights,
                                      batch_size=len(prompts))

    def run_alone(member: Member, tokens: int):
        tokenizer = member.tokenizer
        tokenizer.padding_side = "left"
        batch = tokenizer([member.format_prompt(p, True) for p in prompts], return_tensors="pt", padding=True)

        def go():
            with torch.inference_mode():
                member.model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                      pad_token_id=tokenizer.pad_token_id)
        return go

    run_fused(2)()  # warm-up
    per_token = {}
    for member in members:
        run_alone(member, 2)()
        per_token[member.name] = (_timed(run_alone(member, n), args.repeats)
                                  - _timed(run_alone(member, 1), args.repeats)) / (n - 1)
    fused_time = (_timed(run_fused(n), args.repeats) - _timed(run_fused(1), args.repeats)) / (n - 1)
    own_loop = PackLLMGenerator([primary])
    own = (_timed(lambda: own_loop.generate(prompts, max_new_tokens=n, min_new_tokens=n, batch_size=len(prompts)),
                  args.repeats)
           - _timed(lambda: own_loop.generate(prompts, max_new_tokens=1, batch_size=len(prompts)), args.repeats)
           ) / (n - 1)
    report["decode_ms_per_token"] = {**{k: round(v * 1e3, 2) for k, v in per_token.items()},
                                     "fused": round(fused_time * 1e3, 2),
                                     f"packllm loop, {primary.name} alone": round(own * 1e3, 2)}
    report["fused_over_sum_of_members"] = round(fused_time / sum(per_token.values()), 3)
    report["own_loop_over_generate"] = round(own / per_token[primary.name], 3)


def _solvers(args, members, report) -> None:
    """Part 2: the weight solvers' time and certificates, one thread."""
    import torch

    from blendkit.core.text import source_text
    from blendkit.data import load_mixinstruct
    from blendkit.packllm.scoring import prompt_logprobs
    from blendkit.packllm.weights import PromptLogProbs, exact_weights, greedy_weights, objective

    torch.set_num_threads(1)
    rows = load_mixinstruct(args.eval, min_candidates=0, limit=args.solver_prompts).dataset
    real = [s for s in prompt_logprobs(members, [source_text(r["instruction"], r.get("input") or "") for r in rows])
            if s is not None]
    generator = torch.Generator().manual_seed(0)
    synthetic = [PromptLogProbs(torch.log_softmax(torch.randn(8, 64, 258, generator=generator) * 3, dim=-1).double())
                 for _ in range(10)]
    for label, inputs in ((f"real prompts, K={len(members)}, vocabulary {real[0].logp.shape[2]}", real),
                          ("synthetic K=8, T=64, S=258", synthetic)):
        other = _load_solver(args.compare_solver) if args.compare_solver else None
        exact_ms, other_ms = [], []
        for s in inputs:                                                 # interleaved, best of N each
            exact_ms.append(float("inf"))
            other_ms.append(float("inf"))
            for _ in range(args.repeats):
                exact_ms[-1] = min(exact_ms[-1],
                                   _timed(lambda: exact_weights(PromptLogProbs(s.logp, s.target)), 1) * 1e3)
                if other is not None:
                    other_ms[-1] = min(other_ms[-1], _timed(
                        lambda: other.exact_weights(other.PromptLogProbs(s.logp, s.target)), 1) * 1e3)
        checks_ms = [_timed(lambda s=s: PromptLogProbs(s.logp, s.target).values, args.repeats) * 1e3 for s in inputs]
        greedy_ms = [_timed(lambda s=s: greedy_weights(PromptLogProbs(s.logp, s.target)), args.repeats) * 1e3
                     for s in inputs]
        results = [exact_weights(s) for s in inputs]
        inputs64 = [PromptLogProbs(s.logp.double(), s.target) for s in inputs]
        references = [exact_weights(s, tol=1e-10) for s in inputs64]
        report[f"solver_ms ({label})"] = {
            "prompts": len(inputs), "mean_positions": round(sum(s.logp.shape[1] for s in inputs) / len(inputs), 1),
            "exact_mean": round(sum(exact_ms) / len(inputs), 2), "exact_max": round(max(exact_ms), 2),
            "full_value_check_mean": round(sum(checks_ms) / len(inputs), 2),
            "greedy_mean": round(sum(greedy_ms) / len(inputs), 2),
            "all_converged": all(r.converged for r in results),
            "max_certified_gap": _sci(max(r.gap for r in results)),
            "mean_passes": round(sum(r.passes for r in results) / len(inputs), 2),
            "mean_newton_steps": round(sum(r.iterations for r in results) / len(inputs), 2),
            **({"compared_solver_mean": round(sum(other_ms) / len(inputs), 2),
                "compared_solver_max": round(max(other_ms), 2),
                "compared_over_this": round(sum(other_ms) / sum(exact_ms), 2)} if other is not None else {}),
            "max_f_above_float64_optimum": _sci(max(objective(s64, r.weights) - ref.value
                                                    for r, ref, s64 in zip(results, references, inputs64)))}


def _load_solver(path: str):
    """Another weights.py as a module of its own (it imports only numpy and torch)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("compared_weights", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                     # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
