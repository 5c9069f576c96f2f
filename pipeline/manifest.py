"""``OUT.parts/manifest.json``: what a blend was made with. Resuming with other inputs or options is
refused rather than mixing outputs of two different runs in one file."""

from __future__ import annotations

import hashlib
import json
import os

from ..core.atomic import atomic_open


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

