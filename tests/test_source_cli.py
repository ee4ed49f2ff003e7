"""The source CLI's small parts: settings, output naming and writing, the progress display."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from source.output import plan_stems, save_transcript, stdout_text
from source.progress import Console, Mode
from source.settings import DEFAULT_URL, SourceSettings
from tests.terminal import FakeTTY, screen
from whisperfarm.errors import ErrorCode
from whisperfarm.files import open_atomic, write_atomic
from whisperfarm.protocol import Error, Segment, SegmentData
from whisperfarm.streaming.client import closed_error, describe_connect_error, farm_error
from whisperfarm.streaming.decode import AudioInfo
from whisperfarm.streaming.errors import ExitCode, FarmFailed, FarmOverloaded
from whisperfarm.transcripts import Transcript

INFO = AudioInfo(sample_rate=1000, channels=1, duration=10.0)
UNKNOWN_LENGTH = AudioInfo(sample_rate=1000, channels=1, duration=None)


def test_settings_from_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISPERFARM_SOURCE_RETRIES", "7")
    s = SourceSettings.from_cli(["a.mp3", "b.wav", "--task", "translate", "--quiet"], "x")
    assert s.files == [Path("a.mp3"), Path("b.wav")]
    assert (s.task, s.quiet, s.retries, s.url, s.out) == (
        "translate",
        True,
        7,
        DEFAULT_URL,
        Path("."),
    )
    assert SourceSettings.from_cli(["a.mp3", "--retries", "1"], "x").retries == 1  # flag wins


def test_every_setting_is_described() -> None:
    assert all(f.description for f in SourceSettings.model_fields.values())


def test_exit_codes_order() -> None:
    assert ExitCode.OK < ExitCode.UNREADABLE < ExitCode.OVERLOADED < ExitCode.FAILED
    assert [int(c) for c in ExitCode] == [0, 2, 3, 4]


def test_plan_stems_never_repeat() -> None:
    paths = [Path("a/x.mp3"), Path("b/x.wav"), Path("X.flac"), Path("y.ogg"), Path("c/x.mp3")]
    assert plan_stems(paths) == ["x", "x-2", "X-3", "y", "x-4"]


def test_save_transcript_writes_txt_and_json_atomically(tmp_path: Path) -> None:
    t = Transcript(
        job_id="j",
        name="a.wav",
        text=" hi there ",
        segments=[SegmentData(id=0, start=0, end=1, text="hi there")],
    )
    (tmp_path / "a.txt").write_text("old")
    saved = save_transcript(t, tmp_path, "a")
    assert saved == [tmp_path / "a.txt", tmp_path / "a.json"]
    assert (tmp_path / "a.txt").read_text() == "hi there\n"
    assert Transcript.model_validate_json((tmp_path / "a.json").read_text()) == t
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.txt"]  # no temp left
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_write_atomic_leaves_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "\udc80")  # a lone surrogate cannot be encoded
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_open_atomic_shows_the_file_only_once_it_is_whole(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), open_atomic(target) as file:
        file.write(b"half a checkpoint")
        assert target.read_bytes() == b"old"
        raise RuntimeError("the writer failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temp left
    with open_atomic(target) as file:
        file.write(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_stdout_text_prefix_only_when_several() -> None:
    t = Transcript(job_id="j", text=" hello ", segments=[])
    assert stdout_text(t, "a.wav", several=False) == "hello"
    assert stdout_text(t, "a.wav", several=True) == "a.wav: hello"


def test_error_messages_map_to_outcomes() -> None:
    overloaded = farm_error(
        Error(code=ErrorCode.OVERLOADED, detail="Server overloaded, try later", retry_after=5)
    )
    assert isinstance(overloaded, FarmOverloaded) and overloaded.exit_code == 3
    assert overloaded.message == "farm overloaded (Server overloaded, try later), retry in 5 s"
    failed = farm_error(Error(code=ErrorCode.TOO_LARGE, detail="4 h max"))
    assert isinstance(failed, FarmFailed) and failed.exit_code == 4


def test_connect_errors_read_plainly() -> None:
    assert describe_connect_error(ConnectionRefusedError(111, "x")) == "connection refused"
    multi = OSError(
        "Multiple exceptions: [Errno 111] Connect call failed ('::1', 8000, 0, 0), "
        "[Errno 111] Connect call failed ('127.0.0.1', 8000)"
    )
    assert describe_connect_error(multi) == "connection refused"
    assert describe_connect_error(TimeoutError()) == "timed out"


def test_close_codes_without_an_error_message() -> None:
    assert isinstance(
        closed_error(ConnectionClosedError(Close(1013, "busy"), None)), FarmOverloaded
    )
    assert isinstance(closed_error(ConnectionClosedError(Close(1011, ""), None)), FarmFailed)
    dropped = closed_error(ConnectionClosedError(None, None))
    assert not isinstance(dropped, FarmFailed | FarmOverloaded)  # resumable
    going_away = closed_error(ConnectionClosedError(Close(1001, "restart"), None))
    assert not isinstance(going_away, FarmFailed | FarmOverloaded)


def test_tty_shows_one_bar_per_file_and_scrolls_the_rest_above() -> None:
    err, out = FakeTTY(), io.StringIO()
    with Console(err, out, Mode.TTY, size=lambda: os.terminal_size((80, 24))) as console:
        a = console.track("a.wav", INFO, several=True)
        b = console.track("bb.wav", UNKNOWN_LENGTH, several=True)
        a.accepted("job", 0)
        assert screen(err.getvalue()) == [
            "a.wav   uploading   0%|                    |",
            "bb.wav  waiting… 0.0 s",
        ]
        a.sent(5000)
        a.reconnecting(1, 3, 1.0, "connection dropped")  # a change of state redraws at once
        a.segment(Segment(id=0, start=61.25, end=63.0, text=" hi"))
        assert screen(err.getvalue()) == [
            "whisperfarm-source: a.wav: connection lost (connection dropped), "
            "resuming in 1 s (retry 1/3)",
            "a.wav [01:01.2 → 01:03.0] hi",
            "a.wav   reconnecting (1/3)…  50%|##########          |",
            "bb.wav  waiting… 0.0 s",
        ]
        a.uploaded()
        b.failed("farm overloaded (busy), retry in 5 s")
        a.done(["a.txt"])
        console.transcript("a.wav: hello")
    assert out.getvalue() == "a.wav: hello\n"
    assert screen(err.getvalue())[2:] == [
        "whisperfarm-source: bb.wav: farm overloaded (busy), retry in 5 s",
        "a.wav   done 100%|####################|",
        "bb.wav  failed 0.0 s",
        "",  # the bars closed, the cursor below them
    ]


def test_tty_lines_are_cut_to_the_terminal_width() -> None:
    err = FakeTTY()
    with Console(err, io.StringIO(), Mode.TTY, size=lambda: os.terminal_size((20, 24))) as console:
        console.track("a-very-long-file-name-indeed.wav", INFO, several=False)
    assert screen(err.getvalue()) == ["a-very-long-file-na", ""]


def test_plain_mode_prints_state_changes_not_percentages() -> None:
    err = io.StringIO()
    console = Console(err, io.StringIO(), Mode.PLAIN)
    p = console.track("a.wav", INFO, several=False)
    p.accepted("job1", 0)
    p.sent(5000)
    p.uploaded()
    p.done(["a.txt", "a.json"])
    assert err.getvalue().splitlines() == [
        "whisperfarm-source: a.wav: streaming as job job1",
        "whisperfarm-source: a.wav: uploaded, transcribing…",
        "whisperfarm-source: a.wav: done, saved a.txt, a.json",
    ]


def test_quiet_mode_shows_only_errors() -> None:
    err = io.StringIO()
    console = Console(err, io.StringIO(), Mode.QUIET)
    p = console.track("a.wav", INFO, several=False)
    p.accepted("job1", 0)
    p.segment(Segment(id=0, start=0, end=1, text="hi"))
    p.reconnecting(1, 3, 1.0, "connection dropped")
    p.failed("boom")
    assert err.getvalue() == "whisperfarm-source: a.wav: boom\n"


def test_console_mode_follows_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", FakeTTY())
    assert Console.for_terminal(quiet=False).mode is Mode.TTY
    assert Console.for_terminal(quiet=True).mode is Mode.QUIET
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert Console.for_terminal(quiet=False).mode is Mode.PLAIN
