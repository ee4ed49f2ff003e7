"""Root pytest configuration: markers shared by every test module."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "model: runs the real bundled Whisper model (tiny.en)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
