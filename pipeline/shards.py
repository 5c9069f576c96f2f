"""Each device appends finished rows to its own shard (``OUT.parts/shard-<rank>.jsonl``, flushed and
fsynced per batch); a rerun reads the shards back (cutting a torn last line) and skips what is done;
at the end the shards are merged in input order into OUT, which appears atomically and only when
every row is there, so a partial result never looks complete.
"""

from __future__ import annotations

import json
import os

from pytorch_lightning.callbacks import BasePredictionWriter
from tqdm.auto import tqdm

from ..core.atomic import atomic_open


class ShardWriter(BasePredictionWriter):
    """Appends each finished batch to this rank's shard; a row is done once its line is on disk."""

    def __init__(self, parts_dir: str, total: int, progress: bool = True):
        super().__init__(write_interval="batch")
        self.parts_dir, self.total, self.progress = parts_dir, total, progress
        self.bar = None
        self.file = None

    def setup(self, trainer, pl_module, stage=None) -> None:
        os.makedirs(self.parts_dir, exist_ok=True)
        self.file = open(os.path.join(self.parts_dir, f"shard-{trainer.global_rank}.jsonl"), "a", encoding="utf-8")
        self.world = trainer.world_size
        self.bar = tqdm(total=self.total, desc="blending", unit="row",
                        disable=not self.progress or trainer.global_rank != 0)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        for index, record in prediction:
            self.file.write(json.dumps({"index": index, "record": record}, ensure_ascii=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.bar.update(min(len(prediction) * self.world, self.total - self.bar.n))

    def teardown(self, trainer, pl_module, stage=None) -> None:
        if self.file is not None:
            self.file.close()
        if self.bar is not None:
            self.bar.close()


def read_shards(parts_dir: str) -> dict[int, dict]:
    """Finished rows by input index. A torn last line (the process was killed mid-write) is cut off."""
    done: dict[int, dict] = {}
    if not os.path.isdir(parts_dir):
        return done
    for name in sorted(os.listdir(parts_dir)):
        if not (name.startswith("shard-") and name.endswith(".jsonl")):
            continue
        path = os.path.join(parts_dir, name)
        with open(path, "rb") as f:
            data = f.read()
        lines = data.splitlines(keepends=True)
        good = 0
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line) if line.endswith(b"\n") else None
            except json.JSONDecodeError:
                entry = None
            if entry is None:
                if number < len(lines):   # only the last line can be torn by a crash; anything else is damage
                    raise ValueError(f"{path}, line {number}: not a complete result line; the partial run is damaged. "
                                     f"Delete {parts_dir} to start over.")
                break
            done[int(entry["index"])] = entry["record"]
            good += len(line)
        if good < len(data):
            with open(path, "r+b") as f:
                f.truncate(good)
    return done


def merge(parts_dir: str, output: str, total: int) -> int:
    """Write OUT in input order from the shards (atomically) once every row is there; remove the shards."""
    done = read_shards(parts_dir)
    missing = [i for i in range(total) if i not in done]
    if missing:
        raise RuntimeError(f"blend: {len(missing)} rows have no result in {parts_dir} (first: {missing[:5]}); "
                           f"rerun the same command to finish them.")
    with atomic_open(output) as f:
        for i in range(total):
            f.write(json.dumps(done[i], ensure_ascii=False) + "\n")
    for name in sorted(os.listdir(parts_dir), key=lambda name: name == "lock"):   # the lock file last
        os.unlink(os.path.join(parts_dir, name))
    try:
        os.rmdir(parts_dir)
    except OSError:
        pass   # another run has just created its lock file here; it finds OUT finished and stops
    return total

