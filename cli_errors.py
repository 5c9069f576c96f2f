"""One-paragraph errors for command-line users; the full traceback only with --debug."""

from __future__ import annotations

import sys
from typing import Callable

from .data.errors import ConfigError, DataError

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
        print(f"error: {err}\n(run again with --debug for the full traceback)", file=sys.stderr)
        return 2
    return 0
