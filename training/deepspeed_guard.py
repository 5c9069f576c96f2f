"""DeepSpeed checkpoint folders are unpickled in full by DeepSpeed and Lightning: inspect them first.

``check_deepspeed_checkpoint`` refuses a folder whose pickles name anything beyond tensors and
DeepSpeed's own record types, whose ``latest`` tag points outside it, or that holds a symbolic
link. ``guard_checkpoint_folders`` puts that check in front of a strategy's ``load_checkpoint``, so
every resume (``last``, ``hpc``, a path) and every export goes through it.
"""

from __future__ import annotations

import os

import torch

from ..core.errors import DataError


def is_deepspeed_checkpoint(path: str) -> bool:
    """DeepSpeed strategies save ``last.ckpt`` as a folder of sharded states."""
    return os.path.isdir(os.path.join(path, "checkpoint")) and any(
        name.endswith("model_states.pt") for name in os.listdir(os.path.join(path, "checkpoint")))


# Besides tensors and containers, DeepSpeed pickles these plain record and enum types into its files.
DEEPSPEED_SAFE_GLOBALS = frozenset({
    "deepspeed.utils.tensor_fragment.fragment_address",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
})


def check_deepspeed_checkpoint(path: str) -> None:
    """Refuse a DeepSpeed checkpoint folder that could run code when it is read.

    DeepSpeed and Lightning unpickle these folders with ``weights_only=False``. Before they
    do, the ``latest`` tags must name folders inside ``path``, no symbolic link may appear, and every
    ``.pt`` file below ``path`` is inspected without running its pickle
    (``torch.serialization.get_unsafe_globals_in_checkpoint``): only what ``weights_only=True``
    allows plus DeepSpeed's own record types (``DEEPSPEED_SAFE_GLOBALS``) may appear.
    """
    root = os.path.realpath(path)
    for tag_file in ("latest", "latest_universal"):   # name the tag folder that DeepSpeed / Lightning will read
        tag_path = os.path.join(path, tag_file)
        if os.path.isfile(tag_path):
            with open(tag_path, encoding="utf-8", errors="replace") as f:
                tag = f.read().strip()
            target = os.path.realpath(os.path.join(root, tag))
            if not os.path.isdir(target) or not target.startswith(root + os.sep):
                raise DataError(tag_path, None, None, f"refused: it names {tag!r}, which is not a folder inside "
                                f"{path}.")
    files = []
    for folder, dirs, names in os.walk(path):
        for name in dirs + names:
            if os.path.islink(os.path.join(folder, name)):   # DeepSpeed writes none; a link could lead anywhere
                raise DataError(os.path.join(folder, name), None, None, "refused: a symbolic link inside a "
                                "DeepSpeed checkpoint folder.")
        files += [os.path.join(folder, name) for name in names if name.endswith(".pt")]
    for file in files:
        try:
            found = torch.serialization.get_unsafe_globals_in_checkpoint(file)
        except Exception as err:  # noqa: BLE001 - any unreadable file is refused the same way
            raise DataError(file, None, None, f"cannot inspect this DeepSpeed checkpoint file "
                            f"({type(err).__name__}: {err}).") from None
        unsafe = sorted(set(found) - DEEPSPEED_SAFE_GLOBALS)
        if unsafe:
            raise DataError(file, None, None, f"refused: reading it would call {', '.join(unsafe)}, which is "
                            "neither a tensor type nor one of DeepSpeed's checkpoint records; a checkpoint "
                            "from an untrusted source can run code this way.")


def guard_checkpoint_folders(strategy) -> None:
    """Make ``strategy`` inspect a checkpoint folder with ``check_deepspeed_checkpoint`` before it loads
    one, whatever path Lightning resolved the resume to (``last``, ``hpc``, a path)."""
    strategy.load_checkpoint = _InspectFoldersFirst(strategy)


class _InspectFoldersFirst:
    """``strategy.load_checkpoint`` with the folder check in front; picklable (``ddp_spawn`` pickles the
    strategy), as it calls the class's method rather than holding a bound one."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __call__(self, checkpoint_path, *args, **kwargs):
        if os.path.isdir(checkpoint_path):
            check_deepspeed_checkpoint(str(checkpoint_path))
        return type(self.strategy).load_checkpoint(self.strategy, checkpoint_path, *args, **kwargs)
