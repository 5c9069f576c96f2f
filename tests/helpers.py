"""Small builders shared by the tests (importable as `helpers`: pytest adds tests/ to the path)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_row(row_id: str, scores: list[float], instruction: str = "Say something useful.", **extra) -> dict:
    """A valid MixInstruct row whose candidate k is longer for higher scores (a learnable signal)."""
    return {
        "id": row_id, "instruction": instruction, "input": "", "output": "reference answer", "dataset": "test",
        "candidates": [{"model": f"m{k}", "decoding_method": "greedy",
                        "text": " ".join(["word"] * (2 + int(10 * s))) + f" answer {k}",
                        "scores": {"judge": s, "bleu": 100 * s}} for k, s in enumerate(scores)],
        **extra,
    }


def write_jsonl(path: Path, rows: list, gz: bool = False) -> str:
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return str(path)
