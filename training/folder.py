"""The one folder every export writes: safetensors weights, config, tokenizer, settings and model card.

Training's ``export_dir``, ``infer.py export`` / ``blendkit export`` and re-saving a model folder
all end here, so the three can never drift apart. The folder appears atomically, its files have
ordinary permissions, and it holds no absolute path of the machine it was written on (the config's
``_name_or_path`` fields, and a LoRA adapter's ``base_model_name_or_path``, are replaced by the
backbone's Hub id, or cleared).
"""

from __future__ import annotations

import json
import os

from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from ..core.atomic import save_dir_atomically, umask
from ..core.quiet import deepspeed_not_probed
from .card import guess_base_model, model_card, read_json
from .lora import plain_model


def save_model_folder(model: nn.Module, tokenizer, directory: str, *, kind: str, purpose: str, usage: str,
                      merge_lora: bool = True, settings_file: str | None = None, settings: dict | None = None,
                      card: dict | None = None) -> str:
    """Write ``model`` (LoRA merged into a copy unless ``merge_lora=False``: then the adapter alone) and
    ``tokenizer`` to ``directory``, atomically replacing it. ``card`` holds model-card fields
    (``repo_id``, ``base_model``, ``datasets``, ``metrics``, ``license``)."""
    model = plain_model(model, merge_lora)
    card = dict(card or {})

    def write(tmp: str) -> None:
        with deepspeed_not_probed():
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if settings_file and settings is not None:
            with open(os.path.join(tmp, settings_file), "w", encoding="utf-8") as f:
                json.dump(settings, f, indent=2)
        base = card.pop("base_model", None) or guess_base_model(tmp)
        _drop_local_paths(tmp, base)
        adapter = os.path.exists(os.path.join(tmp, "adapter_config.json"))
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(model_card(kind, purpose, usage, base_model=base, adapter=adapter, **card))
        for name in os.listdir(tmp):   # some writers create private (0600) files: give them a normal mode
            os.chmod(os.path.join(tmp, name), 0o666 & ~umask())

    save_dir_atomically(directory, write)
    rank_zero_info(f"[blendkit] exported the {kind} to {os.path.abspath(directory)}")
    return directory


# file -> the field where transformers (config.json) or peft (adapter_config.json) records where it loaded from
_PATH_FIELDS = {"config.json": "_name_or_path", "adapter_config.json": "base_model_name_or_path"}


def _drop_local_paths(folder: str, base: str | None) -> None:
    """Replace the local paths recorded in ``config.json`` / ``adapter_config.json`` by the Hub id (or nothing)."""
    for filename, field in _PATH_FIELDS.items():
        config = read_json(folder, filename)
        if not config:
            continue
        _replace_paths(config, field, base or "")
        with open(os.path.join(folder, filename), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")


def _replace_paths(config: dict, field: str, replacement: str) -> None:
    """Set ``field`` to ``replacement`` wherever it holds a local path, in nested configs too (bert2bert)."""
    name = config.get(field)
    if isinstance(name, str) and (os.path.isabs(name) or os.path.exists(name)):
        config[field] = replacement
    for value in config.values():
        if isinstance(value, dict):
            _replace_paths(value, field, replacement)
