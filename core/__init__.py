"""What every other part of blendkit builds on: errors, atomic outputs, model resolution, marker tokens,
bootstrap intervals.

Nothing here imports another blendkit package, and nothing here needs `datasets` or Lightning.
"""

from .errors import ConfigError, DataError

__all__ = ["ConfigError", "DataError"]
