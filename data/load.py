"""Load MixInstruct-format rows into a `datasets.Dataset`, validating every row.

A row is one instruction with the answers of several LLMs::

    {"id": "ae-01", "instruction": "...", "input": "", "output": "reference answer",
     "candidates": [{"model": "vicuna-13b", "text": "...", "scores": {"judge": 0.71}}, ...]}

Sources: a local ``.jsonl`` / ``.jsonl.gz`` / ``.json`` (JSON lines or one JSON array) file, a
directory written by ``Dataset.save_to_disk``, or a Hugging Face Hub dataset id. Local files are
parsed here, line by line, rather than by the `datasets` JSON builder, because that builder can
name neither the line nor the field of a bad row; the validated rows then become a `Dataset`.

Every problem is a :class:`DataError` naming file, line and field. With ``on_error="skip"`` bad
rows are left out instead and listed in ``LoadResult.skipped``: nothing is dropped silently.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Sequence

import datasets

from ..core.errors import DataError, PoolError
from ..core.resources import packaged_path

OnError = Literal["raise", "skip"]


@dataclass
class Skipped:
    location: str
    field: str | None
    reason: str


@dataclass
class LoadResult:
    """Validated rows plus an account of what was left out and why."""

    dataset: datasets.Dataset
    source: str
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.dataset)

    def skip_messages(self) -> list[str]:
        """One line per skipped row: file, location, field and reason."""
        return [f"skipped {self.source}, {s.location}, field {s.field}: {s.reason}" for s in self.skipped]

    def summary(self) -> str:
        text = f"{self.source}: {len(self.dataset)} rows loaded"
        if self.skipped:
            reasons = Counter(s.reason.split(":")[0] for s in self.skipped)
            text += f", {len(self.skipped)} skipped (" + "; ".join(f"{n}× {r}" for r, n in reasons.most_common()) + ")"
        return text


# --------------------------------------------------------------------------------------------- #
# Validation of one row
# --------------------------------------------------------------------------------------------- #

def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def validate_row(obj: Any, source: str, location: str, required_scores: Sequence[str] = (),
                 require_output: bool = False, require_candidates: bool = True) -> dict:
    """Check one parsed row and return it in canonical form (all fields present, typed)."""

    def fail(field_path: str | None, problem: str) -> DataError:
        return DataError(source, location, field_path, problem)

    if not isinstance(obj, dict):
        raise fail(None, f"expected a JSON object for the row, got {_type_name(obj)}.")
    row_id = obj.get("id")
    if row_id is None:
        raise fail("id", "missing; every row needs an 'id' (a string) so outputs can be joined back to inputs.")
    if isinstance(row_id, bool) or not isinstance(row_id, (str, int)):
        raise fail("id", f"expected a string or integer, got {_type_name(row_id)}.")
    for name in ("instruction",):
        if name not in obj:
            raise fail(name, "missing; every row needs the instruction text.")
    for name in ("instruction", "input", "output", "dataset"):
        value = obj.get(name, "")
        if value is not None and not isinstance(value, str):
            raise fail(name, f"expected a string, got {_type_name(value)}.")

    if require_output and not obj.get("output"):
        raise fail("output", "missing or empty; the reference answer is the training target of the fuser.")
    candidates = obj.get("candidates")
    if candidates is None and not require_candidates:
        candidates = []  # instruction-only rows: candidates come from a generator
    if candidates is None:
        raise fail("candidates", "missing; expected a list of {model, text, scores} objects.")
    if not isinstance(candidates, list):
        raise fail("candidates", f"expected a list, got {_type_name(candidates)}.")
    clean_candidates = []
    for i, cand in enumerate(candidates):
        path = f"candidates[{i}]"
        if not isinstance(cand, dict):
            raise fail(path, f"expected an object, got {_type_name(cand)}.")
        for name in ("model", "text"):
            if name not in cand:
                raise fail(f"{path}.{name}", "missing.")
            if not isinstance(cand[name], str):
                raise fail(f"{path}.{name}", f"expected a string, got {_type_name(cand[name])}.")
        scores = cand.get("scores", {})
        if scores is None:
            scores = {}
        if not isinstance(scores, dict):
            raise fail(f"{path}.scores", f"expected an object of name -> number, got {_type_name(scores)}.")
        clean_scores = {}
        for key, value in scores.items():
            if value is None:  # Arrow fills keys that other candidates have with null: absent, not bad
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise fail(f"{path}.scores.{key}", f"expected a finite number, got {value!r}.")
            clean_scores[key] = float(value)
        for key in required_scores:
            if key not in clean_scores:
                raise fail(f"{path}.scores.{key}", f"missing; the score key '{key}' was requested "
                           f"(present: {sorted(clean_scores) or 'none'}).")
        decoding = cand.get("decoding_method", "")
        rank = cand.get("rank")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise fail(f"{path}.rank", f"expected a positive integer (1 = best), got {rank!r}.")
        ranker_score = cand.get("ranker_score")
        if ranker_score is not None and (isinstance(ranker_score, bool) or not isinstance(ranker_score, (int, float))):
            raise fail(f"{path}.ranker_score", f"expected a number, got {ranker_score!r}.")
        clean_candidates.append({
            "model": cand["model"],
            "text": cand["text"],
            "decoding_method": decoding if isinstance(decoding, str) else str(decoding),
            "scores": clean_scores,
            # kept from `infer.py rank` output, so a ranked file can be fused without ranking again
            "rank": rank,
            "ranker_score": None if ranker_score is None else float(ranker_score),
        })
    return {
        "id": str(row_id),
        "instruction": obj["instruction"] or "",
        "input": obj.get("input") or "",
        "output": obj.get("output") or "",
        "dataset": obj.get("dataset") or "",
        "candidates": clean_candidates,
    }


# The top-level fields of a row that outputs carry over from the input.
ROW_FIELDS = ("id", "instruction", "input", "output", "dataset")


def candidate_record(cand: dict) -> dict:
    """A loaded candidate as it goes back out: null scores (Arrow's filler) and empty ranks dropped."""
    out = {k: v for k, v in cand.items() if k not in ("scores", "rank", "ranker_score") or v is not None}
    out["scores"] = {n: v for n, v in cand["scores"].items() if v is not None}
    return out


# --------------------------------------------------------------------------------------------- #
# Reading sources
# --------------------------------------------------------------------------------------------- #

def _read_local(path: str) -> Iterator[tuple[str, Any]]:
    """Yield (location, parsed object) for each row of a local file; DataError on unreadable input."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(path, None, None, f"cannot read the file ({type(err).__name__}: {err}).",
                        "Is it a complete, uncorrupted file (gzip for .gz)?") from None
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark, as some editors write
        raw = raw[3:]
    if not raw.strip():
        raise DataError(path, None, None, "the file is empty: no rows to load.")

    if raw.lstrip()[:1] == b"[" and not path.endswith((".jsonl", ".jsonl.gz")):
        yield from _read_json_array(path, raw)
        return
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        location = f"line {number}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            yield location, _BadJSON(f"not valid UTF-8 (byte 0x{line[err.start]:02x} at column {err.start + 1}); "
                                     "re-encode the file as UTF-8.")
            continue
        try:
            yield location, json.loads(text)
        except json.JSONDecodeError as err:
            yield location, _BadJSON(f"malformed JSON at column {err.colno}: {err.msg}.")


def _read_json_array(path: str, raw: bytes) -> Iterator[tuple[str, Any]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(path, f"line {line}", None, "not valid UTF-8.", "Re-encode the file as UTF-8.") from None
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    index = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise DataError(path, None, None, "malformed JSON: the array is never closed with ']'.")
        if text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            # Inside one array a syntax error leaves no safe place to resume: always fatal.
            raise DataError(path, f"line {err.lineno}", None,
                            f"malformed JSON at column {err.colno}: {err.msg}.") from None
        yield f"row {index} (line {line})", obj
        index += 1


class _BadJSON:
    def __init__(self, problem: str):
        self.problem = problem


def _read_datasets(source: str, split: str | None) -> Iterator[tuple[str, Any]]:
    """Rows of a saved `datasets` directory or a Hub dataset id, located by row index."""
    try:
        if os.path.isdir(source):
            loaded = datasets.load_from_disk(source)
        else:
            loaded = datasets.load_dataset(source, split=split or "train")
    except FileNotFoundError as err:
        raise DataError(source, None, None, f"not found ({err}). Give a .jsonl/.jsonl.gz/.json file, a "
                        "directory saved with Dataset.save_to_disk, or a Hub dataset id.") from None
    except Exception as err:  # offline Hub access, unknown ids, corrupt folders: all user-facing
        raise DataError(source, None, None, f"cannot load it with `datasets` ({type(err).__name__}: {err}).",
                        "Offline, only local files and saved dataset directories can be read.") from None
    if isinstance(loaded, datasets.DatasetDict):
        name = split or "train"
        if name not in loaded:
            raise DataError(source, None, None, f"has no split '{name}' (splits: {sorted(loaded)}).")
        loaded = loaded[name]
    for index, obj in enumerate(loaded):
        yield f"row {index}", obj


def _iter_source(source: str, split: str | None) -> Iterator[tuple[str, Any]]:
    if os.path.isfile(source):
        yield from _read_local(source)
    elif os.path.isdir(source):
        yield from _read_datasets(source, split)
    elif source.endswith((".json", ".jsonl", ".gz")) or os.sep in source and not _looks_like_hub_id(source):
        raise DataError(source, None, None, "file not found.")
    else:
        yield from _read_datasets(source, split)


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/"))


# --------------------------------------------------------------------------------------------- #
# Public entry point
# --------------------------------------------------------------------------------------------- #

def load_mixinstruct(
    source: str | os.PathLike,
    *,
    split: str | None = None,
    pool: Sequence[str] | str | None = None,
    required_scores: Sequence[str] = (),
    min_candidates: int = 2,
    on_error: OnError = "raise",
    limit: int | None = None,
    require_output: bool = False,
) -> LoadResult:
    """Load and validate MixInstruct-format rows.

    Args:
        source: local file, saved dataset directory, or Hub dataset id.
        pool: keep only candidates from these models (a list, or a file with one name a line);
            ``None`` or ``"all"`` keeps every candidate. Names that occur in no row are an error
            (usually a typo).
        required_scores: score keys every candidate must carry (e.g. ``["judge"]`` for training).
        min_candidates: rows with fewer candidates (after pool filtering) are bad rows; with 0, rows
            may also leave out ``candidates`` entirely (instruction-only input for a generator).
        require_output: the reference ``output`` must be a non-empty string (fuser training).
        on_error: ``"raise"`` stops at the first bad row with a :class:`DataError`;
            ``"skip"`` leaves bad rows out and lists them in ``LoadResult.skipped``.
        limit: stop after this many valid rows.

    Example:
        >>> result = load_mixinstruct("data/samples/alpacaeval_mix_sample.jsonl", required_scores=["judge"])
        >>> result.dataset[0]["candidates"][0]["model"]  # doctest: +SKIP
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    source = packaged_path(os.fspath(source))
    pool_names = resolve_pool(pool)
    rows: list[dict] = []
    skipped: list[Skipped] = []
    seen_ids: dict[str, str] = {}
    seen_models: set[str] = set()

    def reject(err: DataError) -> None:
        if on_error == "raise":
            raise err
        skipped.append(Skipped(err.location or "", err.field, err.problem))

    for location, obj in _iter_source(source, split):
        if isinstance(obj, _BadJSON):
            reject(DataError(source, location, None, obj.problem))
            continue
        try:
            row = validate_row(obj, source, location, required_scores, require_output, min_candidates > 0)
        except DataError as err:
            reject(err)
            continue
        row_models = sorted({c["model"] for c in row["candidates"]})
        seen_models.update(row_models)
        if pool_names is not None:
            row["candidates"] = [c for c in row["candidates"] if c["model"] in pool_names]
        if len(row["candidates"]) < min_candidates and pool_names is not None:
            reject(PoolError(pool, source, location, "candidates", f"has {len(row['candidates'])} candidate(s) in "
                             f"the pool {_pool_name(pool)}; at least {min_candidates} are needed to rank.",
                             f"The row's models: {_names(row_models)}; the pool's: {_names(sorted(pool_names))}. Give "
                             "a pool that names this data's models, or no pool to keep every candidate."))
            continue
        if len(row["candidates"]) < min_candidates:
            reject(DataError(source, location, "candidates", f"has {len(row['candidates'])} candidate(s) in the "
                             f"row; at least {min_candidates} are needed to rank."))
            continue
        if row["id"] in seen_ids:
            reject(DataError(source, location, "id", f"duplicate id {row['id']!r} (first seen at "
                             f"{seen_ids[row['id']]}); ids must be unique."))
            continue
        seen_ids[row["id"]] = location
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break

    if pool_names is not None and seen_models:
        unknown = sorted(set(pool_names) - seen_models)
        if unknown and limit is None:
            raise PoolError(pool, source, None, "candidates[].model", f"pool models never seen in this data: "
                            f"{unknown} (the pool {_pool_name(pool)}).", "Check the spelling of the pool names.")
    if not rows:
        raise DataError(source, None, None, f"no valid rows ({len(skipped)} skipped"
                        + (f"; first: {skipped[0].location}: {skipped[0].reason}" if skipped else "") + ").")
    return LoadResult(dataset=datasets.Dataset.from_list(rows), source=source, skipped=skipped)


def _pool_name(pool) -> str:
    """The pool as the user gave it: its file, or its names."""
    return os.fspath(pool) if isinstance(pool, (str, os.PathLike)) else f"[{_names(sorted(pool))}]"


def _names(names: Sequence[str], most: int = 6) -> str:
    return ", ".join(names[:most]) + (f", … ({len(names)} in all)" if len(names) > most else "")


def resolve_pool(pool: Sequence[str] | str | None) -> set[str] | None:
    """A pool given as names, as a file of names (one a line), or None/'all' for every model."""
    if pool is None or pool == "all":
        return None
    if isinstance(pool, (str, os.PathLike)):
        path = packaged_path(os.fspath(pool))
        if not os.path.isfile(path):
            raise DataError(path, None, None, "pool file not found; give a file with one model name a line, or 'all'.")
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        if not names:
            raise DataError(path, None, None, "the pool file lists no model names.")
        return set(names)
    names = set(pool)
    if not names:
        raise ValueError("pool must name at least one model (or be None / 'all').")
    return names
