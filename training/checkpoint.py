"""What a blendkit Lightning checkpoint holds besides the weights, and how to read it safely.

Every checkpoint records which component wrote it (``KIND_KEY``) and carries the tokenizer's files
(``TOKENIZER_KEY``), so a checkpoint alone rebuilds the model: neither the backbone nor the
training machine is needed to resume or export. Files are read with ``weights_only=True``, which
runs no pickled code.
"""

from __future__ import annotations

import os
import tempfile

import torch
from transformers import AutoTokenizer

from ..core.errors import DataError

KIND_KEY = "blendkit_kind"            # "pairranker" or "genfuser"
TOKENIZER_KEY = "blendkit_tokenizer"  # {file name: bytes} of the tokenizer's saved files


def tokenizer_files(tokenizer) -> dict[str, bytes]:
    """The tokenizer's saved files as bytes, to be stored inside a training checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        files = {}
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name), "rb") as f:
                files[name] = f.read()
        return files


def tokenizer_from_files(files: dict[str, bytes]):
    """Inverse of :func:`tokenizer_files`."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            with open(os.path.join(tmp, os.path.basename(name)), "wb") as f:
                f.write(data)
        return AutoTokenizer.from_pretrained(tmp)


def checkpoint_kind(path: str) -> str:
    """Which blendkit component a ``.ckpt`` file holds (e.g. "pairranker")."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise DataError(path, None, None, f"cannot read it as a Lightning checkpoint with weights_only=True "
                        f"({type(err).__name__}: {err}).") from None
    kind = checkpoint.get(KIND_KEY)
    if kind is None:
        raise DataError(path, None, KIND_KEY, "not a blendkit checkpoint (no model kind recorded).")
    return kind
