"""Atomic outputs: a reader sees the old file (or folder) or the complete new one, never a partial one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Callable, Iterator, TextIO


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str = "utf-8") -> Iterator[TextIO]:
    """Write to a temporary file beside ``path``; rename it over ``path`` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    check_writable_dir(directory, path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_dir_atomically(directory: str, write: Callable[[str], object]) -> str:
    """Call ``write(tmp_dir)`` and then move the finished folder to ``directory`` (replacing it)."""
    directory = os.path.abspath(directory)
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    check_writable_dir(parent, directory)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.", dir=parent)
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private; give it a normal folder's mode
        if os.path.exists(directory):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.old.", dir=parent)
            os.rmdir(old)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def check_writable_dir(directory: str, target: str) -> None:
    """Fail before any work when ``target`` could not be written into ``directory``."""
    if not os.path.isdir(directory):
        raise OSError(f"cannot write {target}: the directory {directory} does not exist.")
    if not os.access(directory, os.W_OK):
        raise OSError(f"cannot write {target}: the directory {directory} is not writable.")


def umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
