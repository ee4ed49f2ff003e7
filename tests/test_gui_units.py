"""GUI building blocks without a page: rows, state, SSE parsing, rejected store, settings."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gui.broker_api import BrokerApi, BrokerUnavailable, parse_sse
from gui.languages import AUTO, options, to_request
from gui.rejected import Rejected, RejectedStore
from gui.rows import build_rows, changed_rows, format_duration, format_timestamp
from gui.settings import GuiSettings
from gui.state import MAX_JOBS, GuiState, Upload
from gui.uploads import safe_name
from tests.farm import ROOT
from whisperfarm.jobs import Job, JobStatus, preview_of


def job(job_id: str, status: str = "done", updated: float = 1.0, **extra: object) -> Job:
    return Job.model_validate(
        {"id": job_id, "name": f"{job_id}.wav", "status": status, "created_at": updated,
         "updated_at": updated, "sample_rate": 16_000, "channels": 1, "format": "s16le", **extra}
    )  # fmt: skip


# ---- rows ----------------------------------------------------------------------------


def test_rows_merge_jobs_uploads_and_rejections_newest_first(tmp_path: Path) -> None:
    state, store = GuiState("http://b"), RejectedStore(tmp_path)
    state.jobs = {
        "a": job("a", updated=10, duration=65.0, language="en", worker="w1", preview="hello world")
    }
    state.jobs["b"] = job("b", "failed", updated=20, error="no worker took the stream")
    state.uploads["u"] = Upload(
        "u", "up.mp3", tmp_path / "up.mp3", None, "transcribe", created_at=30, phase="checking"
    )
    store.rows["r"] = Rejected(
        key="r", name="busy.wav", kind="overloaded", reason="Server overloaded, try later",
        created_at=40, file="x",
    )  # fmt: skip

    rows = build_rows(state, store)

    assert [r["key"] for r in rows] == ["r", "u", "b", "a"]
    busy, upload, failed, done = rows
    assert (busy["label"], busy["detail"], busy["retry"], busy["dismiss"], busy["open"]) == (
        "Rejected", "Server overloaded, try later", True, True, False,
    )  # fmt: skip
    assert (upload["label"], upload["open"], upload["progress"]) == ("Checking", False, None)
    assert (failed["label"], failed["detail"]) == ("Failed", "no worker took the stream")
    assert (done["label"], done["preview"], done["duration"], done["worker"]) == (
        "Done", "hello world", "1:05", "w1",
    )  # fmt: skip
    assert done["open"] and done["job_id"] == "a"


def test_an_accepted_upload_shows_as_its_job_with_progress(tmp_path: Path) -> None:
    state = GuiState("http://b")
    upload = Upload("u", "talk.wav", tmp_path / "talk.wav", None, "transcribe", phase="uploading",
                    job_id="j", frames_sent=250, expected_frames=1000)  # fmt: skip
    state.uploads["u"] = upload
    (before,) = build_rows(state, RejectedStore(tmp_path))
    assert (before["key"], before["label"], before["progress"]) == ("u", "Uploading", 0.25)

    state.jobs["j"] = job("j", "streaming")
    (row,) = build_rows(state, RejectedStore(tmp_path))
    assert (row["key"], row["label"], row["progress"], row["progress_label"]) == (
        "j", "Streaming", 0.25, "Uploaded 25%",
    )  # fmt: skip
    upload.phase = "transcribing"
    (row,) = build_rows(state, RejectedStore(tmp_path))
    assert row["progress"] is None


def test_durations_and_timestamps() -> None:
    assert [format_duration(s) for s in (0, 7.4, 65, 3723)] == ["0:00", "0:07", "1:05", "1:02:03"]
    assert format_timestamp(3.26) == "0:03.3"
    assert format_timestamp(3723.5) == "1:02:03.5"


# ---- state ---------------------------------------------------------------------------


def test_events_older_than_what_is_known_are_ignored() -> None:
    state = GuiState("http://b")
    assert state.upsert_job(job("a", "done", updated=5))
    assert not state.upsert_job(job("a", "streaming", updated=4))
    assert state.jobs["a"].status is JobStatus.DONE
    # A listing taken before the newest event does not roll it back either.
    state.replace_jobs([job("a", "transcribing", updated=3), job("b", updated=1)])
    assert state.jobs["a"].status is JobStatus.DONE and "b" in state.jobs


def test_the_job_list_is_bounded() -> None:
    state = GuiState("http://b")
    state.replace_jobs([job(str(n), updated=n) for n in range(MAX_JOBS + 50)])
    assert len(state.jobs) == MAX_JOBS
    assert "0" not in state.jobs and str(MAX_JOBS + 49) in state.jobs


def test_connection_banner_and_preview() -> None:
    state = GuiState("http://broker:8000")
    assert not state.connection.down  # not checked yet: no banner before the first try
    state.set_down("connection refused")
    assert state.connection.down
    assert state.connection.reason == "connection refused"
    state.set_up()
    assert not state.connection.down
    assert preview_of("  a\n b  ") == "a b"
    assert preview_of("x" * 1000).endswith("…") and len(preview_of("x" * 1000)) == 120


def test_a_job_event_changes_only_its_own_row(tmp_path: Path) -> None:
    state, store = GuiState("http://b"), RejectedStore(tmp_path)
    state.replace_jobs([job(str(n), "streaming", updated=n) for n in range(MAX_JOBS)])
    shown = build_rows(state, store)

    state.upsert_job(job("7", "done", updated=1000, preview="hello"))
    changed, removed = changed_rows(shown, build_rows(state, store))
    assert [(r["key"], r["label"], r["preview"]) for r in changed] == [("7", "Done", "hello")]
    assert removed == []

    state.replace_jobs([j for j in state.jobs.values() if j.id != "3"])
    assert changed_rows(shown, build_rows(state, store))[1] == ["3"]


async def test_listeners_hear_changes_coalesced() -> None:
    import asyncio

    state, calls = GuiState("http://b"), []
    unsubscribe = state.subscribe(lambda: calls.append(state.version))
    for n in range(100):
        state.upsert_job(job(str(n)))
    await asyncio.sleep(0.4)
    assert calls == [100]
    unsubscribe()
    state.changed()
    await asyncio.sleep(0.4)
    assert calls == [100]


# ---- broker API ------------------------------------------------------------------------


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_sse_parsing_skips_keepalives_and_junk() -> None:
    lines = _lines(
        ": keepalive", "", "event: farm", 'data: {"queue": 1}', "",
        "event: job", "data: not json", "", "event: job", 'data: {"id": "a",', 'data: "x": 1}', "",
    )  # fmt: skip
    events = [e async for e in parse_sse(lines)]
    assert events == [("farm", {"queue": 1}), ("job", {"id": "a", "x": 1})]


async def test_an_unreachable_broker_is_one_readable_error() -> None:
    api = BrokerApi("http://127.0.0.1:9", connect_timeout=2)
    try:
        with pytest.raises(BrokerUnavailable) as raised:
            await api.farm()
        assert raised.value.reason == "connection refused"
        with pytest.raises(BrokerUnavailable):
            async for _ in api.events():
                pass
        assert await api.job("../../etc") is None  # never sent: not a job id
    finally:
        await api.close()


# ---- rejected store and names ------------------------------------------------------------


def test_rejected_rows_survive_a_restart_and_a_damaged_file_is_set_aside(tmp_path: Path) -> None:
    store = RejectedStore(tmp_path)
    store.load()
    kept = store.upload_dir("k") / "a.wav"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"x")
    store.add(Rejected(key="k", name="a.wav", kind="overloaded", reason="r",
                       file=store.relative(kept)))  # fmt: skip
    store.add(Rejected(key="gone", name="b.wav", kind="overloaded", reason="r", file="uploads/x/b"))
    (tmp_path / "uploads" / "orphan").mkdir()

    again = RejectedStore(tmp_path)
    again.load()
    again.remove_orphans(set())
    assert again.rows["k"].retryable
    assert not again.rows["gone"].retryable, "a row whose file is gone cannot be retried"
    assert not (tmp_path / "uploads" / "orphan").exists()
    assert again.dismiss("k") and not kept.parent.exists()

    (tmp_path / "rejected.json").write_text("{not json")
    broken = RejectedStore(tmp_path)
    broken.load()
    assert broken.rows == {}
    assert list(tmp_path.glob("rejected.damaged-*"))


def test_upload_names_are_safe_path_components() -> None:
    assert safe_name("talk.mp3") == "talk.mp3"
    assert safe_name("") == safe_name(".") == safe_name("..") == "upload"
    assert safe_name("a/b\\c\x00.wav") == "a_b_c_.wav"
    long = safe_name("x" * 500 + ".flac")
    assert len(long) <= 200 and long.endswith(".flac")


# ---- settings, languages, entry point ----------------------------------------------------


def test_settings_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISPERFARM_GUI_BROKER", "http://farm:8000/")
    settings = GuiSettings.from_cli(["--port", "0", "--data-dir", "/tmp/x"], "whisperfarm-gui")
    assert (settings.port, settings.broker, settings.data_dir) == (
        0,
        "http://farm:8000",
        Path("/tmp/x"),
    )
    assert settings.stream_url == "ws://farm:8000/v1/stream"
    assert GuiSettings(broker="https://farm").stream_url == "wss://farm/v1/stream"
    with pytest.raises(ValueError, match="http"):
        GuiSettings(broker="ws://farm:8000")
    with pytest.raises(ValueError):
        GuiSettings(max_files=11)


def test_language_choices() -> None:
    choices = options()
    assert next(iter(choices)) == AUTO
    assert choices["en"] == "English (en)" and "yue" in choices
    assert to_request(AUTO) is None and to_request("xx") is None and to_request("ru") == "ru"


def test_entry_point_help_and_usage_errors(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gui", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    helped = run("--help")
    assert helped.returncode == 0 and "--broker" in helped.stdout and "--data-dir" in helped.stdout
    bad = run("--broker", "ftp://x")
    assert bad.returncode == 2
    assert "--broker: Value error, must start with http:// or https://" in bad.stderr
    assert "Traceback" not in bad.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = run("--port", port, "--data-dir", str(tmp_path))
    assert busy.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in busy.stderr
    assert "Traceback" not in busy.stderr


def test_rejected_rows_file_is_plain_json(tmp_path: Path) -> None:
    store = RejectedStore(tmp_path)
    store.add(Rejected(key="k", name="a.wav", kind="unreadable", reason="Unreadable: empty file"))
    (row,) = json.loads((tmp_path / "rejected.json").read_text())
    assert (row["name"], row["kind"], row["file"]) == ("a.wav", "unreadable", None)
