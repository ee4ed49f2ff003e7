"""Fixtures: a broker with a `null`-engine worker for fast protocol tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import Broker, Worker, start_broker, start_worker


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
