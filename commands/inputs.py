"""What the batch commands share: the input/output options, loading the input, writing JSONL output."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..core.atomic import atomic_open, check_writable_dir
from ..core.resources import packaged_path
from ..data import LoadResult, load_mixinstruct


def add_data_args(parser: argparse.ArgumentParser, data_help: str) -> None:
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--split", default=None, help="split name for dataset dirs / Hub ids (default: train)")
    parser.add_argument("--output", required=True, help="output .jsonl (written atomically)")
    parser.add_argument("--pool", default=None, help="file of model names (one a line) or 'all' (default)")
    parser.add_argument("--on-error", default="raise", choices=["raise", "skip"], help="bad rows: stop or skip")
    parser.add_argument("--limit", type=int, default=None, help="only the first N valid rows")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def load_input(args: argparse.Namespace, **options) -> LoadResult:
    """Check the output path first (fail before any work), then load --data and report skipped rows."""
    check_writable_dir(os.path.dirname(os.path.abspath(args.output)), args.output)
    args.data = packaged_path(args.data)
    data = load_mixinstruct(args.data, split=args.split, pool=args.pool, on_error=args.on_error, limit=args.limit,
                            **options)
    print(data.summary(), file=sys.stderr)
    for message in data.skip_messages():
        print(f"  {message}", file=sys.stderr)
    return data


def write_jsonl(path: str, records) -> None:
    with atomic_open(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def summary(records: list, data: LoadResult, seconds: float, output: str, **extra) -> dict:
    """The JSON every batch command prints last."""
    return {"rows": len(records), "skipped": len(data.skipped), "seconds": round(seconds, 1),
            "output": os.path.abspath(output), **extra}
