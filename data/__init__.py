"""MixInstruct-format data: loading with validation, score combination, pair building."""

from ..core.errors import ConfigError, DataError, PoolError
from ..core.text import source_text
from .load import ROW_FIELDS, LoadResult, Skipped, candidate_record, load_mixinstruct, resolve_pool, validate_row
from .pairs import build_pairs
from .scores import ScoreSpec

__all__ = ["ROW_FIELDS", "candidate_record", "ConfigError", "DataError", "LoadResult", "PoolError", "Skipped",
           "ScoreSpec", "build_pairs", "load_mixinstruct", "resolve_pool", "source_text", "validate_row"]
