"""Turn what training wrote (a Lightning checkpoint, or a saved model folder) into a Hub-style folder.

The folder holds ``model.safetensors``, ``config.json`` and the tokenizer (with the added marker
tokens) and loads with ``Ranker.from_pretrained`` / ``Fuser.from_pretrained`` (or the plain
transformers classes).
Checkpoints are read with ``torch.load(weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

import os
import tempfile

import torch

from .atomic import save_dir_atomically
from .data.errors import DataError

KIND_KEY = "blendkit_kind"  # written into every Lightning checkpoint by the blendkit modules
TOKENIZER_KEY = "blendkit_tokenizer"  # the tokenizer's files, so a checkpoint is self-contained


def checkpoint_kind(path: str) -> str:
    """Which blendkit model a checkpoint holds (e.g. "pairranker")."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise DataError(path, None, None, f"cannot read it as a Lightning checkpoint with weights_only=True "
                        f"({type(err).__name__}: {err}).") from None
    kind = checkpoint.get(KIND_KEY)
    if kind is None:
        raise DataError(path, None, KIND_KEY, "not a blendkit checkpoint (no model kind recorded).")
    return kind


def is_deepspeed_checkpoint(path: str) -> bool:
    """DeepSpeed strategies save ``last.ckpt`` as a folder of sharded states."""
    return os.path.isdir(os.path.join(path, "checkpoint")) and any(
        name.endswith("model_states.pt") for name in os.listdir(os.path.join(path, "checkpoint")))


def export_checkpoint(checkpoint: str, output: str, merge_lora: bool = True) -> str:
    """Export ``checkpoint`` (a ``.ckpt`` file, a DeepSpeed checkpoint folder, or a saved model folder)."""
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint}: not found.")
    if os.path.isdir(checkpoint) and is_deepspeed_checkpoint(checkpoint):
        try:
            from pytorch_lightning.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(f"checkpoint {checkpoint} is a DeepSpeed checkpoint; converting it needs deepspeed "
                              "(pip install 'blendkit[deepspeed]').") from err
        with tempfile.TemporaryDirectory() as tmp:
            single = os.path.join(tmp, "consolidated.ckpt")
            convert_zero_checkpoint_to_fp32_state_dict(checkpoint, single)  # gathers the ZeRO shards
            return export_checkpoint(single, output, merge_lora)
    if os.path.isdir(checkpoint):
        return _copy_model_folder(checkpoint, output)

    kind = checkpoint_kind(checkpoint)
    if kind == "pairranker":
        from .pairranker.module import PairRankerModule

        module = PairRankerModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    elif kind == "genfuser":
        from .genfuser.module import GenFuserModule

        module = GenFuserModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    else:
        raise DataError(checkpoint, None, KIND_KEY, f"unknown model kind {kind!r}.")
    module.export(output, merge_lora=merge_lora)
    return output


def _copy_model_folder(source: str, output: str) -> str:
    """Re-save a model folder (ranker or fuser) through transformers: safetensors, config, tokenizer."""
    import shutil

    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

    from . import pairranker  # noqa: F401  (registers the blendkit model types with AutoModel)
    from .genfuser.inference import SETTINGS_FILE

    config = AutoConfig.from_pretrained(source)
    auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModel
    model = auto.from_pretrained(source, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(source)

    def write(tmp: str) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for extra in (SETTINGS_FILE, "README.md"):
            if os.path.exists(os.path.join(source, extra)):
                shutil.copy(os.path.join(source, extra), tmp)

    return save_dir_atomically(output, write)
