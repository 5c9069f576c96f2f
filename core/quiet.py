"""Keep other libraries' messages that do not concern a blendkit user off the console.

Each of these used to reach a plain ``make demo``, and none asks anything of the user:

- transformers, building a bert2bert fuser: "This checkpoint seem corrupted" and a LOAD REPORT table of
  MISSING weights. The decoder's cross-attention and LM head are new by design
  (:func:`fresh_weights_expected` drops the report when it names only those weights).
- DeepSpeed's "Setting accelerator to CPU", on stdout: accelerate imports DeepSpeed inside every
  ``save_pretrained`` only to test ``isinstance(model, DeepSpeedEngine)`` (:func:`deepspeed_not_probed`).
- transformers' "The following layers were not sharded", on every load after torchmetrics' BERTScore has
  set the level of transformers' loading logger: a tensor-parallel check that no blendkit run asks for.
- Lightning's "Total length of `list` across ranks is zero" when training without validation data
  (``data.val_file: null``): blendkit's data modules then give Lightning an empty list of validation
  batches on purpose.
- Lightning's "💡 Tip" advert and its tensorboardX notice, and deprecation warnings about the libraries'
  own internals (torch's ``LeafSpec`` inside Lightning, transformers' EncoderDecoder loss notice).

:func:`quiet_third_party` (called by the command-line entry points) drops the log records and warnings
by their exact messages; blendkit's own warnings and every other message still show.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import warnings
from contextlib import contextmanager
from typing import Iterator

# Warnings that other libraries raise about their own internals (message regexes).
HARMLESS_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Starting from v1\.9\.0, `tensorboardX` has been removed",
    r"Version v4\.12\.0 introduces a better way to train encoder-decoder models",
    r"Total length of `list` across ranks is zero",
)

# Logger -> starts of log messages that say nothing a user can act on.
HARMLESS_LOGS = {
    "transformers.distributed.tensor_parallel": ("The following layers were not sharded",
                                                 "The following TP rules were not applied"),
    # Lightning logs its infos through whichever of these modules was imported last.
    "pytorch_lightning.utilities.rank_zero": ("💡 Tip:",),
    "lightning_fabric.utilities.rank_zero": ("💡 Tip:",),
    "lightning_utilities.core.rank_zero": ("💡 Tip:",),
}


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


def quiet_third_party() -> None:
    """Drop the known-harmless messages of other libraries for the rest of the process (idempotent)."""
    for message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name, starts in HARMLESS_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(starts))


class _FreshWeightsReport(logging.Filter):
    """Drops transformers' load report and tied-weight notice when every weight they name matches ``pattern``."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        names = _weights_named(record.getMessage())
        return not names or not all(self.pattern.search(name) for name in names)


def _weights_named(message: str) -> list[str]:
    if "LOAD REPORT" in message:   # a table: "<weight> | MISSING | ..." under a "Key | Status" header
        cells = [[c.strip() for c in line.split("|")] for line in message.splitlines()[1:] if "|" in line]
        return [row[0] for row in cells if row[0] and row[0] != "Key"]
    if "seem corrupted" in message:
        return [name for pair in re.findall(r"tie (\S+) to (\S+?),", message) for name in pair]
    return []


@contextmanager
def fresh_weights_expected(pattern: str) -> Iterator[None]:
    """Around a load that creates the weights matching ``pattern`` by design (regex, searched in each weight
    name): transformers' reports that name only such weights are dropped; one naming any other weight shows."""
    logger = logging.getLogger("transformers.modeling_utils")
    report = _FreshWeightsReport(pattern)
    logger.addFilter(report)
    try:
        yield
    finally:
        logger.removeFilter(report)


@contextmanager
def deepspeed_not_probed() -> Iterator[None]:
    """Around ``save_pretrained``: accelerate's unwrapping imports DeepSpeed (when installed) to test whether
    the model is a DeepSpeed engine. None can exist before DeepSpeed is imported, so the test is skipped then,
    and DeepSpeed is imported only by runs that choose a DeepSpeed strategy."""
    try:
        other = importlib.import_module("accelerate.utils.other")
    except ImportError:
        other = None
    probe = getattr(other, "is_deepspeed_available", None)
    if probe is None or "deepspeed" in sys.modules:
        yield
        return
    other.is_deepspeed_available = lambda: False
    try:
        yield
    finally:
        other.is_deepspeed_available = probe
