"""The ``blendkit`` command: one subcommand per package function, each in its own file.

    blendkit train fit --config pairranker/minilm_cpu     # Lightning's CLI over a recipe (packaged or a path)
    blendkit rank     --data FILE --model DIR --output OUT.jsonl
    blendkit fuse     --data FILE --model FUSER_DIR [--ranker DIR] --output OUT.jsonl
    blendkit generate --data FILE --models smollm2 gemma3-270m --output OUT.jsonl
    blendkit blend    --data FILE --ranker DIR [--fuser DIR] [--generate-with MODELS...] --output OUT.jsonl
    blendkit export   --checkpoint CKPT_OR_DIR --output DIR [--push-to-hub REPO_ID]
    blendkit recipes                                       # list the packaged training recipes

``train.py`` and ``infer.py`` at the top of a source checkout are the same commands. Every
command prints a JSON summary on stdout (progress and examples go to stderr). Errors in the input
name file, line and field; add ``--debug`` for a full traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..core.quiet import quiet_third_party
from ..core.resources import packaged_recipes
from ..training.cli import train_cli
from . import blend, export, fuse, generate, rank
from .errors import run_cli

COMMANDS = (rank, fuse, generate, blend, export)


def build_parser(prog: str = "blendkit") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train a model from a YAML recipe (Lightning's CLI; see `blendkit train --help`)",
                   add_help=False)
    sub.add_parser("recipes", help="list the packaged training recipes")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def dispatch(argv: list[str], prog: str = "blendkit") -> None:
    """Run one subcommand and print its summary."""
    if argv and argv[0] == "train":
        sys.argv = [f"{prog} train"]   # Lightning's CLI names the program after sys.argv[0] in its help
        train_cli(argv[1:])
        return
    args = build_parser(prog).parse_args(argv)
    if args.command == "recipes":
        print("\n".join(packaged_recipes()))
        return
    result = args.run(args)
    if result is not None:
        print(json.dumps(result, indent=2))


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The console script: ``blendkit SUBCOMMAND ...``; returns the exit code."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_third_party()
    prog = prog or os.path.basename(sys.argv[0]) or "blendkit"
    return run_cli(lambda args: dispatch(args, prog), argv)
