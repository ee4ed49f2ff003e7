"""Fixtures: a broker with a `null`-engine worker for fast protocol tests; a disk agent; a
fake farm for the source CLI; tiny.en in this process, for driving a worker's state by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from broker.disk import Disk
from tests.fake_farm import FakeFarm, serving
from tests.farm import Broker, Worker, start_broker, start_worker
from workers import engines
from workers.engines import Engine
from workers.settings import WorkerSettings


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = start_broker(tmp_path, "--idle-timeout", "3")
    yield b
    b.process.stop()


@pytest.fixture
def null_worker(tmp_path: Path, broker: Broker) -> Iterator[Worker]:
    w = start_worker(tmp_path, broker.zmq, engine="null")
    broker.wait_workers(1)
    yield w
    w.process.stop()


@pytest.fixture
async def disk() -> AsyncIterator[Disk]:
    """A disk agent of the test's own, as the broker has one."""
    disk = Disk()
    await disk.start()
    yield disk
    await disk.close()


@pytest.fixture
async def farm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeFarm]:
    """A fake farm for the source CLI's tests (`tests/fake_farm.py`)."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    async with serving() as fake:
        yield fake


@pytest.fixture(scope="module")
def tiny_en_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """faster-whisper with tiny.en, loaded once per module that asks for it."""
    cache = tmp_path_factory.mktemp("models")
    return engines.load(WorkerSettings(engine="faster-whisper", model="tiny.en",
                                       model_cache_dir=cache))  # fmt: skip
