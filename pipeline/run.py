"""Run a blend over rows: Lightning's predict loop on any number of devices, resumable, one run at a time.

The run holds ``OUT.parts/lock`` (``pipeline/runlock.py``), checks or writes the manifest
(``pipeline/manifest.py``), predicts the rows not yet in the shards (``pipeline/shards.py``), and
merges them into OUT on global rank 0.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import pytorch_lightning as pl
import torch

from .blend import BlendModule
from .manifest import check_manifest
from .runlock import RunLock
from .shards import ShardWriter, merge, read_shards


def run_blend(module: BlendModule, rows: Sequence[dict], output: str, data_fingerprint: dict, batch_size: int = 4,
              accelerator: str = "auto", devices: int | str = 1, strategy: str = "auto", precision: str | None = None,
              progress: bool = True, overwrite: bool = False) -> dict:
    """Blend ``rows`` into ``output``; resumes from ``output``.parts when it exists. Returns a summary.

    A finished ``output`` (no partial run beside it) is only replaced with ``overwrite``. The run holds
    ``output``.parts/lock (``runlock.RunLock``): a second run into the same output is refused."""
    parts_dir = output + ".parts"
    start = time.time()
    had_process_group = torch.distributed.is_available() and torch.distributed.is_initialized()
    with RunLock(parts_dir) as lock:
        if (os.path.exists(output) and not os.path.exists(os.path.join(parts_dir, "manifest.json"))
                and not overwrite):
            raise FileExistsError(f"{output} already holds a finished blend; pass --overwrite to compute it again "
                                  f"(it is replaced only when the new run completes).")
        check_manifest(parts_dir, data_fingerprint)
        done = read_shards(parts_dir)   # (cuts a torn last line: only while no other process writes)
        if not lock.worker:
            lock.share()
        todo = [(i, row) for i, row in enumerate(rows) if i not in done]
        trainer = pl.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
                             logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=[ShardWriter(parts_dir, len(todo), progress)])
        if todo:
            # every device needs at least one row; repeats are harmless (results are keyed by input index)
            work = todo + [todo[-1]] * max(0, trainer.num_devices * trainer.num_nodes - len(todo))
            loader = torch.utils.data.DataLoader(work, batch_size=batch_size, shuffle=False, collate_fn=list)
            trainer.predict(module, loader, return_predictions=False)
        trainer.strategy.barrier()
        if not had_process_group and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()   # ours (Lightning's); the merge and metrics are rank 0's alone
        active = {"generate": module.generator is not None, "rank": True, "fuse": module.fuser is not None}
        seconds = {k: v for k, v in module.seconds.items() if active[k]}
        busy = sum(seconds.values()) or 1.0
        summary = {"rows": len(rows), "resumed_from": len(done), "computed": len(todo),
                   "seconds": round(time.time() - start, 1),
                   "stage_seconds": {k: round(v, 2) for k, v in seconds.items()},
                   "stage_share": {k: round(v / busy, 3) for k, v in seconds.items()}}
        if trainer.is_global_zero:
            merge(parts_dir, output, len(rows))
            summary["output"] = os.path.abspath(output)
        return summary

