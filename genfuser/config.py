"""FuserSettings: how a fuser's input is laid out; saved beside its weights as ``blendkit_fuser.json``.

The one place the fuser's defaults are written: the formatter, the ``Fuser`` API and the training
module all take them from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..core.errors import ConfigError

SETTINGS_FILE = "blendkit_fuser.json"


@dataclass(frozen=True)
class FuserSettings:
    """
    Args:
        top_k: candidates fused per row (LLM-Blender uses 3).
        source_max_length: token budget of the instruction (+ input).
        candidate_max_length: token budget of each candidate.
        target_max_length: longest fused answer in tokens (training targets and generation).
    """

    top_k: int = 3
    source_max_length: int = 96
    candidate_max_length: int = 128
    target_max_length: int = 128

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")

    def to_dict(self) -> dict:
        return asdict(self)
