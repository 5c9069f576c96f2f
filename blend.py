"""Offline batch blending: (generate) → rank → fuse, on Lightning's predict loop, resumable and sharded.

Per row: optional extra candidates from a PackLLM generator (the fused answer, and/or each member
alone), a PairRanker ranking of all candidates, and a GenFuser answer from the top-K. Each device
writes finished rows to its own shard (`OUT.parts/shard-<rank>.jsonl`, flushed and fsynced per
batch). A rerun of the same command reads the shards, skips the rows already done and goes on; at the
end the shards are merged in input order into OUT, which appears atomically and only when every row
is there, so a partial result never looks complete. `OUT.parts/manifest.json` records what the run
was made with; resuming with other options is refused rather than mixing outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import nn
from tqdm.auto import tqdm

from .atomic import atomic_open
from .data import ROW_FIELDS, candidate_record
from .data.text import source_text
from .runlock import RunLock


@dataclass
class BlendOptions:
    top_k: int | None = None                  # candidates fused (default: the fuser's)
    aggregation: str = "max_logits"
    generate_fused: bool = True               # with a generator: add its fused answer
    generate_members: bool = False            # with a generator: add each member's own answer
    generate: dict = field(default_factory=dict)   # PackLLMGenerator.generate options
    fuse: dict = field(default_factory=dict)       # Fuser.fuse generate options


class BlendModule(pl.LightningModule):
    """The per-row pipeline as a predict step; the models are submodules, so Lightning places them."""

    def __init__(self, ranker, fuser=None, generator=None, options: BlendOptions | None = None):
        super().__init__()
        self.ranker, self.fuser, self.generator = ranker, fuser, generator
        self.options = options or BlendOptions()
        self.models = nn.ModuleList([ranker.model] + ([fuser.model] if fuser else [])
                                    + ([m.model for m in generator.members] if generator else []))
        self.seconds = {"generate": 0.0, "rank": 0.0, "fuse": 0.0}

    def on_predict_start(self) -> None:
        for member in (self.generator.members if self.generator else []):
            if member.vocab_map is not None:
                member.vocab_map.to(self.device)

    def predict_step(self, batch: list[tuple[int, dict]], batch_idx: int = 0) -> list[tuple[int, dict]]:
        indices = [i for i, _ in batch]
        rows = [dict(row, candidates=[candidate_record(c) for c in row["candidates"]]) for _, row in batch]
        if self.generator is not None:
            self._generate(rows)
        start = time.perf_counter()
        results = self.ranker.rank([r["instruction"] for r in rows], [[c["text"] for c in r["candidates"]] for r in rows],
                                   aggregation=self.options.aggregation, inputs=[r["input"] for r in rows],
                                   ids=[r["id"] for r in rows])
        self.seconds["rank"] += time.perf_counter() - start
        for row, result in zip(rows, results):
            for cand, rank, score in zip(row["candidates"], result.ranks, result.scores):
                cand["rank"], cand["ranker_score"] = rank, float(score)
            best = row["candidates"][result.best]
            row["selected"] = {"model": best["model"], "text": best["text"], "ranker_score": best["ranker_score"]}
        if self.fuser is not None:
            start = time.perf_counter()
            fused = self.fuser.fuse([r["instruction"] for r in rows], [[c["text"] for c in r["candidates"]] for r in rows],
                                    top_k=self.options.top_k, ranks=[res.ranks for res in results],
                                    inputs=[r["input"] for r in rows], **self.options.fuse)
            self.seconds["fuse"] += time.perf_counter() - start
            for row, result in zip(rows, fused):
                row["fused_from"] = [row["candidates"][i]["model"] for i in result.fused_from]
                row["fused"] = result.fused
        return list(zip(indices, [_output_record(r) for r in rows]))

    def _generate(self, rows: list[dict]) -> None:
        start = time.perf_counter()
        gen = self.generator
        prompts = [source_text(r["instruction"], r["input"]) for r in rows]
        weights = gen.weights(prompts)
        added: list[list[dict]] = [[] for _ in rows]
        if self.options.generate_fused:
            for k, out in enumerate(gen.generate(prompts, weights=weights, **self.options.generate)):
                added[k].append(_generated(f"packllm-{gen.weighting}", out, gen.names))
        if self.options.generate_members:
            for m, member in enumerate(gen.members):
                vertex = torch.zeros_like(weights)
                vertex[:, m] = 1.0
                for k, out in enumerate(gen.generate(prompts, weights=vertex, **self.options.generate)):
                    added[k].append(_generated(member.name, out, gen.names))
        for row, extra in zip(rows, added):
            names = {c["model"] for c in extra}
            row["candidates"] = [c for c in row["candidates"] if c["model"] not in names] + extra
        self.seconds["generate"] += time.perf_counter() - start


def _generated(name: str, out, members: list[str]) -> dict:
    return {"model": name, "decoding_method": "packllm", "text": out.text, "scores": {},
            "packllm": {"members": members, "weights": out.weights, "tokens": out.tokens,
                        "finish_reason": out.finish_reason}}


def _output_record(row: dict) -> dict:
    record = {name: row[name] for name in ROW_FIELDS}
    record["candidates"] = row["candidates"]
    for name in ("selected", "fused_from", "fused"):
        if name in row:
            record[name] = row[name]
    return record


# -- shards, resume, merge --------------------------------------------------------------------------------

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


def fingerprint(data_path: str, settings: dict) -> dict:
    """What a resumed run must share with the one it continues: the input's bytes and the settings."""
    digest = hashlib.sha256()
    if os.path.isfile(data_path):       # the SHA-256 of the file, as `sha256sum` prints it
        _hash_file(digest, data_path)
    elif os.path.isdir(data_path):      # a saved `datasets` folder: every file's name, size and bytes
        for folder, _, names in sorted(os.walk(data_path)):
            for name in sorted(names):
                path = os.path.join(folder, name)
                digest.update(os.fsencode(os.path.relpath(path, data_path)) + b"\0"
                              + os.path.getsize(path).to_bytes(8, "little"))
                _hash_file(digest, path)
    else:
        digest.update(data_path.encode())   # a Hub dataset id
    return {"data": os.path.abspath(data_path) if os.path.exists(data_path) else data_path,
            "data_sha256": digest.hexdigest(), "settings": settings}


def _hash_file(digest, path: str) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def check_manifest(parts_dir: str, expected: dict) -> bool:
    """Write the manifest for a new run; for a resumed run, refuse one made with other inputs/options.
    Returns True when resuming."""
    path = os.path.join(parts_dir, "manifest.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
        if found != json.loads(json.dumps(expected)):
            changed = sorted(k for k in set(found["settings"]) | set(expected["settings"])
                             if found["settings"].get(k) != expected["settings"].get(k))
            if found.get("data_sha256") != expected["data_sha256"]:
                changed.insert(0, "the input data")
            raise ValueError(f"{parts_dir} holds a partial run made with different {', '.join(changed) or 'settings'}; "
                             f"rerun with the same options to resume it, or delete {parts_dir} to start over.")
        return True
    os.makedirs(parts_dir, exist_ok=True)
    with atomic_open(path) as f:
        json.dump(expected, f, indent=2)
    return False


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


def blend_quality(path: str, score_key: str = "judge") -> dict:
    """Metrics of a finished blend file, where the rows allow them: the mean score of the selected
    candidate (rows whose pick has a score) against the best available, and BLEU / ROUGE-L of the fused
    and the selected answer against the reference ``output``."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    out: dict = {}
    scored = [r for r in rows if "selected" in r and any(c["scores"].get(score_key) is not None for c in r["candidates"])]
    picks = []
    for row in scored:
        chosen = next(c for c in row["candidates"] if c["rank"] == 1)
        if chosen["scores"].get(score_key) is not None:
            picks.append((chosen["scores"][score_key],
                          max(c["scores"][score_key] for c in row["candidates"] if c["scores"].get(score_key) is not None)))
    if picks:
        out[f"selected_{score_key}"] = round(100 * sum(p for p, _ in picks) / len(picks), 3)
        out[f"oracle_{score_key}"] = round(100 * sum(b for _, b in picks) / len(picks), 3)
        out["rows_scored"] = len(picks)
    fused = [r for r in rows if r.get("fused") is not None and r.get("output")]
    if fused:
        from .genfuser.metrics import FusionMetrics

        metrics = FusionMetrics(bertscore_model=None)
        metrics.update([r["fused"] for r in fused], [r["selected"]["text"] for r in fused], [r["output"] for r in fused])
        out.update({k: round(v, 3) for k, v in metrics.compute().items()})
    return out
