"""The WebSocket path on the lowest uvicorn and websockets `broker.ws_compat` supports,
as well as on the installed ones, and the broker's refusal of versions outside that range.

A broker process gets the versions under test first on its `PYTHONPATH`: `pip install
--target` into pytest's cache, once per version set, so each later run costs only the
broker and worker starts. Without the package index the install tests are skipped
(a failure when `CI=true`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from broker.ws_compat import SUPPORTED, installed_versions
from tests.farm import ROOT, spawn, start_broker, start_worker
from tests.wsclient import stream_pcm, tone

LOWEST = {
    name: next(s.version for s in SpecifierSet(spec) if s.operator == ">=")
    for name, spec in SUPPORTED.items()
}
"""Library → the lowest version the broker declares (`==13` installs 13.0)."""

BELOW = {"websockets": "12.0"}
"""A release just below the supported range."""


def test_pyproject_declares_the_supported_range() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for name, spec in SUPPORTED.items():
        assert f"{name}{spec}" in dependencies


@pytest.fixture
def lib_cache(pytestconfig: pytest.Config, tmp_path: Path) -> Path:
    """Where installed versions are kept between runs (pytest's cache, if it is on)."""
    cache = getattr(pytestconfig, "cache", None)
    return cache.mkdir("ws-versions") if cache else tmp_path


def pythonpath_with(versions: dict[str, str], cache: Path) -> dict[str, str]:
    """An environment whose `PYTHONPATH` puts `versions` ahead of the venv's own
    (none: the venv's own)."""
    if not versions:
        return {}
    pins = sorted(f"{name}=={version}" for name, version in versions.items())
    folder = cache / "-".join(pins)
    if not folder.exists():
        pip_install_target(pins, folder)
    path = os.pathsep.join(filter(None, [str(folder), str(ROOT), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path}


def pip_install_target(pins: list[str], folder: Path) -> None:
    """`pip install --target folder`, whole or not at all; skip (fail on CI) offline."""
    partial = folder.with_name(f"{folder.name}.{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
         "--target", str(partial), *pins],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        reason = f"cannot pip install {' '.join(pins)}: {done.stderr.strip()[-300:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true, so this is a failure", pytrace=False)
        pytest.skip(reason)
    partial.replace(folder)


def imported_versions(broker_output: str) -> dict[str, Version]:
    """What the broker says it runs on (`WebSocket protocol on uvicorn 0.50.0, …`)."""
    match = re.search(r"WebSocket protocol on (.+)", broker_output)
    assert match, broker_output
    pairs = (item.split(" ") for item in match.group(1).split(", "))
    return {name: Version(version) for name, version in pairs}


VERSIONS = pytest.mark.parametrize("versions", [LOWEST, {}], ids=["lowest", "installed"])

COMPAT_READINGS = """
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from broker import ws_compat
conn = ServerProtocol(state=State.OPEN, max_size=1000)
conn.receive_data(Frame(Opcode.BINARY, b"ab", fin=False).serialize(mask=True, extensions=[]))
print(ws_compat.frame_size_limit(conn), ws_compat.partial_message_size(conn))
"""
"""What `broker.ws_compat` reads of a connection with a 1000-byte limit that has
received the first two bytes of a fragmented message."""


@VERSIONS
def test_the_compat_layer_reads_the_size_limit_and_a_fragmented_message(
    lib_cache: Path, versions: dict[str, str]
) -> None:
    env = {**os.environ, **pythonpath_with(versions, lib_cache)}
    done = subprocess.run(
        [sys.executable, "-c", COMPAT_READINGS],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.split() == ["1000", "2"], done.stderr


@VERSIONS
async def test_a_stream_through_the_direct_path_ends_in_a_final(
    tmp_path: Path, lib_cache: Path, versions: dict[str, str]
) -> None:
    """Handshake, packets through the direct path, `end`, final, on a broker that
    really imported those versions."""
    broker = start_broker(tmp_path, env=pythonpath_with(versions, lib_cache))
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        expected = {**installed_versions(), **versions}
        assert imported_versions(broker.process.output()) == {
            name: Version(version) for name, version in expected.items()
        }
        broker.wait_workers(1)
        reply = await stream_pcm(broker.ws, tone(1.0))
        assert reply.last["type"] == "final", reply.messages
    finally:
        worker.process.stop()
        broker.process.stop()


def test_an_unsupported_websockets_stops_the_broker_with_one_line(
    tmp_path: Path, lib_cache: Path
) -> None:
    process = spawn(
        ["-m", "broker", "--port", "0", "--zmq", "tcp://127.0.0.1:*",
         "--data-dir", str(tmp_path / "data")],
        tmp_path / "broker.log",
        pythonpath_with(BELOW, lib_cache),
    )  # fmt: skip
    assert process.popen.wait(30) == 2
    output = process.output()
    line = f"whisperfarm-broker: websockets {BELOW['websockets']} not supported"
    assert line in output, output
    assert "Traceback" not in output, output
