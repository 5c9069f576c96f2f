"""One blend per output at a time: every process of a run holds a lock on ``OUT.parts/lock``.

The launching process (rank 0) takes the lock exclusively, without waiting: a second run into the
same output stops at once, naming the first one's pid, instead of appending to (and cutting) the same
shards. Once it has read the shards it downgrades to a shared lock, and its workers (the other ranks,
started by Lightning, torchrun, SLURM or MPI) take shared locks too, so the run stays locked for as
long as any of its processes lives, even if rank 0 was killed. Locks are ``flock``s: the kernel drops
them when a process dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time

# Environment variables through which launchers tell a process its rank; any non-zero one: a worker.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "OMPI_COMM_WORLD_RANK",
                  "PMI_RANK")


def is_worker() -> bool:
    """True in a process that a multi-process launch started with a non-zero rank."""
    return any(int(os.environ.get(name) or 0) != 0 for name in RANK_VARIABLES)


class RunLock:
    """``with RunLock(parts_dir) as lock: ...; lock.share()`` — see the module docstring."""

    def __init__(self, folder: str, worker: bool | None = None, wait_seconds: float = 120.0):
        self.folder, self.path = folder, os.path.join(folder, "lock")
        self.worker = is_worker() if worker is None else worker
        self.wait_seconds = wait_seconds
        self.file = None

    def __enter__(self) -> RunLock:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            os.makedirs(self.folder, exist_ok=True)
            file = open(self.path, "a+", encoding="utf-8")
            try:
                # a worker may arrive while its launcher still holds the lock alone: it waits for the share
                fcntl.flock(file, (fcntl.LOCK_SH if self.worker else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                if self.worker and time.monotonic() < deadline:
                    file.close()
                    time.sleep(0.2)
                    continue
                file.seek(0)
                holder = file.read().strip() or "another process"
                file.close()
                raise OSError(f"{self.folder} is in use by a blend that is still running ({holder}); wait for it, "
                              "or stop it and run again to resume.") from None
            if self._same_file(file):
                break
            file.close()   # the finished run removed the lock file between our open and our lock: again
        if not self.worker:
            file.seek(0)
            file.truncate()
            file.write(f"pid {os.getpid()}\n")
            file.flush()
        self.file = file
        return self

    def _same_file(self, file) -> bool:
        try:
            return os.fstat(file.fileno()).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def share(self) -> None:
        """Let this run's workers in (the launcher, after it has read and repaired the shards)."""
        fcntl.flock(self.file, fcntl.LOCK_SH)

    def __exit__(self, *exc) -> None:
        self.file.close()   # closing the file releases the lock
        if not self.worker and os.path.isdir(self.folder) and os.listdir(self.folder) == ["lock"]:
            os.unlink(self.path)   # nothing was started here (e.g. a refused run): leave no folder behind
            os.rmdir(self.folder)
