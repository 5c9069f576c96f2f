"""One-paragraph errors for command-line users; the full traceback only with --debug."""

from __future__ import annotations

import sys
from typing import Callable

from ..core.errors import ConfigError, DataError

USER_ERRORS = (DataError, ConfigError, FileNotFoundError, PermissionError, OSError, ValueError, ImportError)


def run_cli(main: Callable[[list[str]], object], argv: list[str] | None = None) -> int:
    """Run ``main(argv)``; user errors print ``error: ...`` and exit 2 unless ``--debug`` is given."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    try:
        main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"error: {_innermost_user_error(err)}\n(run again with --debug for the full traceback)",
              file=sys.stderr)
        return 2
    return 0


def _innermost_user_error(err: BaseException) -> BaseException:
    """The DataError/ConfigError that caused ``err`` (argument parsers wrap them in long messages)."""
    seen = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, (DataError, ConfigError)):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return err
