"""``blendkit generate``: add a PackLLM-fused answer to each row as a candidate named ``packllm-<weighting>``."""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ..packllm import WEIGHTINGS, PackLLMGenerator
from ..pipeline.candidates import add_generated_candidates
from .inputs import add_data_args, load_input, summary, write_jsonl


def add_parser(sub) -> None:
    gen = sub.add_parser("generate", help="add a PackLLM-fused answer to each row as a candidate")
    add_data_args(gen, "MixInstruct rows; rows may have only id + instruction")
    gen.add_argument("--models", nargs="+", required=True,
                     help="causal LMs (Hub ids, folders, or packaged: smollm2, gemma3-270m); the first is the primary")
    gen.add_argument("--weighting", default="shrunk", choices=WEIGHTINGS)
    gen.add_argument("--tau", type=float, default=0.1, help="temperature of the sim weighting")
    gen.add_argument("--top-m", type=int, default=None,
                     help="solve weights on each member's top-M tokens + pooled rest (faster, approximate; "
                          "default: the whole vocabulary, exact)")
    gen.add_argument("--max-new-tokens", type=int, default=128)
    gen.add_argument("--do-sample", action="store_true")
    gen.add_argument("--temperature", type=float, default=0.7)
    gen.add_argument("--top-p", type=float, default=0.9)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--stop", nargs="*", default=None, help="stop strings")
    gen.add_argument("--no-chat", action="store_true", help="feed the raw instruction, not the chat template")
    gen.add_argument("--name", default=None, help="candidate model name (default: packllm-<weighting>)")
    gen.add_argument("--batch-size", type=int, default=8)
    gen.add_argument("--device", default=None)
    gen.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    gen.add_argument("--show", type=int, default=0, help="print the first N answers")
    gen.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    data = load_input(args, min_candidates=0)
    dtype = {"float32": None, "bfloat16": torch.bfloat16}[args.dtype]
    generator = PackLLMGenerator.from_pretrained(args.models, weighting=args.weighting, device=args.device or "cpu",
                                                 dtype=dtype, tau=args.tau, top_m=args.top_m, chat=not args.no_chat)
    rows = list(data.dataset)
    start = time.time()
    outputs = add_generated_candidates(
        rows, generator, name=args.name, max_new_tokens=args.max_new_tokens, do_sample=args.do_sample,
        temperature=args.temperature, top_p=args.top_p, stop=args.stop or (), seed=args.seed,
        batch_size=args.batch_size, progress=not args.quiet)
    write_jsonl(args.output, rows)
    seconds = time.time() - start
    tokens = sum(o.tokens for o in outputs)
    for row, out in list(zip(rows, outputs))[:args.show]:
        print(f"\n### {row['id']} λ={out.weights}: {row['instruction'][:120]!r}\n  {out.text[:400]!r}", file=sys.stderr)
    return summary(rows, data, seconds, args.output, members=generator.names, weighting=args.weighting,
                   new_tokens=tokens, tokens_per_second=round(tokens / max(seconds, 1e-9), 2))
