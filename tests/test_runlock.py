"""OUT.parts/lock: one blend per output, held by every process of the run, gone with its processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from blendkit.pipeline.runlock import RunLock, is_worker

_HOLD = """
import sys, time
from blendkit.pipeline.runlock import RunLock
with RunLock(sys.argv[1], worker=sys.argv[2] == "worker", wait_seconds=5) as lock:
    if not lock.worker:
        lock.share()
    print("locked", flush=True)
    time.sleep(60)
"""


def _hold(folder, role):
    """A process that holds the lock as `role` (launcher or worker) until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder), role],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_ranks_from_any_launcher_are_workers(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "OMPI_COMM_WORLD_RANK",
                 "PMI_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not is_worker()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not is_worker()
    for name in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "NODE_RANK"):
        monkeypatch.setenv(name, "2")
        assert is_worker(), name
        monkeypatch.setenv(name, "0")


def test_workers_share_the_run_and_keep_it_locked_after_the_launcher_dies(tmp_path):
    folder = tmp_path / "out.jsonl.parts"
    launcher = _hold(folder, "launcher")
    worker = _hold(folder, "worker")           # joins the launcher's (shared) lock
    with pytest.raises(OSError, match=re.escape(f"still running (pid {launcher.pid})")):
        RunLock(str(folder), worker=False).__enter__()
    launcher.kill()
    launcher.wait()
    with pytest.raises(OSError, match="still running"):   # the worker still writes its shard: still locked
        RunLock(str(folder), worker=False).__enter__()
    worker.kill()
    worker.wait()
    with RunLock(str(folder), worker=False) as lock:        # every process of the old run is gone
        assert open(lock.path).read() == f"pid {os.getpid()}\n"


def test_a_worker_waits_for_its_launcher_to_share_then_gives_up(tmp_path):
    folder = tmp_path / "p"
    with RunLock(str(folder), worker=False):
        start = time.monotonic()
        with pytest.raises(OSError, match="in use"):
            RunLock(str(folder), worker=True, wait_seconds=0.5).__enter__()
        assert time.monotonic() - start >= 0.5
    assert not folder.exists()
