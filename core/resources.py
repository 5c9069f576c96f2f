"""Files that ship inside the blendkit package: the sample data and the training recipes.

The recipes name their data relative to the package (``data/samples/train.jsonl.gz``), so they run
from a source checkout and from a ``pip install``; a path that exists where it is given always wins.
"""

from __future__ import annotations

import os

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(PACKAGE_ROOT, "configs")


def packaged_path(path: str) -> str:
    """``path`` itself if it exists (or is absolute); else the packaged file of that relative name, if any."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    inside = os.path.join(PACKAGE_ROOT, path)
    return inside if os.path.exists(inside) else path


def recipe_path(name: str) -> str:
    """A recipe given as a path, or by its packaged name (``pairranker/minilm_cpu`` or ``…/minilm_cpu.yaml``)."""
    if os.path.exists(name):
        return name
    for candidate in (os.path.join(RECIPES, name), os.path.join(RECIPES, name + ".yaml"),
                      os.path.join(PACKAGE_ROOT, name)):
        if os.path.isfile(candidate):
            return candidate
    return name


def packaged_recipes() -> list[str]:
    """Names of the shipped recipes, e.g. ``pairranker/minilm_cpu``."""
    names = []
    for folder, _, files in sorted(os.walk(RECIPES)):
        names += [os.path.relpath(os.path.join(folder, f), RECIPES)[:-5] for f in sorted(files) if f.endswith(".yaml")]
    return names
