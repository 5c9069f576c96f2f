"""Errors for bad input: one readable paragraph that says which file, which line and which field."""

from __future__ import annotations


class DataError(ValueError):
    """A problem with user data, located precisely.

    ``source`` is the file (or dataset id), ``location`` the line ("line 12") or row ("row 3"),
    ``field`` the JSON path inside the row ("candidates[2].scores.judge").
    """

    def __init__(self, source: str, location: str | None, field: str | None, problem: str, hint: str = ""):
        self.source, self.location, self.field, self.problem, self.hint = source, location, field, problem, hint
        where = ", ".join(part for part in (source, location, f"field '{field}'" if field else None) if part)
        message = f"{where}: {problem}"
        if hint:
            message += f" {hint}"
        super().__init__(message)


class PoolError(DataError):
    """The candidate pool does not fit the data (no row keeps enough candidates, or names never seen);
    ``pool`` is the pool as it was given (a file name or a list of model names)."""

    def __init__(self, pool, *args, **kwargs):
        self.pool = pool
        super().__init__(*args, **kwargs)


class ConfigError(ValueError):
    """A setting that cannot work, named by its field (e.g. ``source_max_length``)."""
