"""GUI page logic with NiceGUI's simulated user, against a real broker and null worker.

No browser here: the pages run in the test's event loop and the tests look at what they
would send to one (elements, marks, notifications, table rows). Real Chromium drives a
GUI process in `test_gui_browser.py`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import websockets
from nicegui import ui

from gui.settings import GuiSettings
from tests.farm import Broker, Worker, start_broker, start_worker, wait_for
from tests.gui_conftest import (
    eventually,
    fail_on_error_logs,
    gui_settings,
    row_named,
    simulate,
    table_rows,
    wav_bytes,
)
from tests.wsclient import packets, start_message, stream_pcm, tone

pytestmark = pytest.mark.timeout(180)
PATIENCE = 300
"""`should_see` retries for outcomes of background work: 30 s (it sleeps 0.1 s a try)."""


def shared_view(tmp_path: Path, broker_http: str) -> GuiSettings:
    """A GUI whose broker token is not a `service:` one: it names nobody to the broker,
    so every browser sees every job, other clients' included (these tests stream from
    outside the GUI; each person's own view is tests/test_gui_people.py)."""
    return gui_settings(tmp_path, broker_http, broker_token="shared-view")


async def upload_files(user: Any, *files: tuple[str, bytes]) -> None:
    """What the browser does on a drop: post the files to the page's upload element."""
    upload = next(iter(user.find(marker="upload").elements))
    assert isinstance(upload, ui.upload)
    await upload.handle_uploads(  # NiceGUI's hook for simulating uploads in tests
        [ui.upload.SmallFileUpload(name, "application/octet-stream", data) for name, data in files]
    )


def done_row(user: Any, name: str) -> dict[str, Any] | None:
    row = row_named(user, name)
    return row if row and row["status"] == "done" and row["preview"] else None


async def test_a_shared_view_gui_shows_the_farm_and_jobs_of_other_clients(
    tmp_path: Path, broker: Broker, null_worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    async with simulate(shared_view(tmp_path, broker.http)) as gui:
        user = gui.user
        await user.open("/")
        await user.should_see("whisperfarm")
        await user.should_see("Transcribe files")
        await eventually(lambda: gui.services.state.connection.up, what="the event feed")
        await user.should_see(marker="farm-workers", content="1", retries=PATIENCE)
        await user.should_see("0 / 10")
        await user.should_see(marker="farm-worker")
        await user.should_not_see(marker="broker-banner")
        await user.should_see("Broker online")
        health = await user.http_client.get("/healthz")
        assert health.json() == {"status": "ok", "broker": "up"}

        # A job streamed by another client (the CLI, say) shows up live, with its preview.
        reply = await stream_pcm(broker.ws, tone(1.0), name="from-the-cli.wav")
        assert reply.last["type"] == "final"
        row = await eventually(lambda: done_row(user, "from-the-cli.wav"), what="the CLI's job")
        assert row["label"] == "Done"
        assert row["preview"].startswith("[null engine]")
        assert row["duration"] == "0:01"
        assert row["open"] and not row["retry"] and not row["dismiss"]
    fail_on_error_logs(caplog)


async def test_a_job_event_sends_the_browser_its_row_not_the_whole_table(
    tmp_path: Path, broker: Broker, null_worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with simulate(shared_view(tmp_path, broker.http)) as gui:
        user = gui.user
        await user.open("/")
        await stream_pcm(broker.ws, tone(0.5), name="first.wav")
        await eventually(lambda: done_row(user, "first.wav"), what="the first job")
        (table,) = [t for t in user.find(marker="jobs").elements if isinstance(t, ui.table)]
        outbox = user.client.outbox
        updated: list[int] = []
        patches: list[str] = []
        enqueue_update, enqueue_message = outbox.enqueue_update, outbox.enqueue_message

        def spy_update(element: Any) -> None:
            updated.append(element.id)
            enqueue_update(element)

        def spy_message(kind: str, data: Any, target: str) -> None:
            if kind == "run_javascript" and f"elements[{table.id}]" in data["code"]:
                patches.append(data["code"])
            enqueue_message(kind, data, target)

        monkeypatch.setattr(outbox, "enqueue_update", spy_update)
        monkeypatch.setattr(outbox, "enqueue_message", spy_message)

        await stream_pcm(broker.ws, tone(0.5), name="second.wav")
        row = await eventually(lambda: done_row(user, "second.wav"), what="the second job")
        assert row["preview"].startswith("[null engine]")
        assert table.id not in updated  # never the whole table again
        assert patches and all(row["job_id"] in code for code in patches)
        assert not any("first.wav" in code for code in patches)


async def test_upload_streams_readable_files_and_refuses_the_rest_with_a_reason(
    tmp_path: Path, broker: Broker, null_worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    async with simulate(shared_view(tmp_path, broker.http)) as gui:
        user = gui.user
        await user.open("/")
        await eventually(lambda: gui.services.state.connection.up, what="the event feed")
        await upload_files(
            user,
            ("one.wav", wav_bytes(1.0)),
            ("not audio.mp3", b"this is not an mp3 at all" * 10),
            ("two.wav", wav_bytes(2.0, rate=44_100)),
        )
        await user.should_see("not audio.mp3 refused: not an audio or video file", retries=PATIENCE)
        await user.should_see("Uploading 2 files to the farm", retries=PATIENCE)
        for name in ("one.wav", "two.wav"):
            row = await eventually(functools.partial(done_row, user, name), what=f"{name} done")
            assert row["preview"].startswith("[null engine]")
        names = {j["name"] for j in broker.jobs()}
        assert names == {"one.wav", "two.wav"}, "the unreadable file never reached the farm"

        refused = row_named(user, "not audio.mp3")
        assert refused is not None
        assert refused["status"] == "rejected"
        assert refused["detail"].startswith("Unreadable: not an audio or video file")
        assert refused["dismiss"] and not refused["retry"] and not refused["open"]
        uploads = gui.services.store.uploads_dir
        assert not any(uploads.iterdir()), "files are not kept once streamed or refused"

        user.find(marker="jobs").trigger("dismiss", {"key": refused["key"]})
        await eventually(lambda: row_named(user, "not audio.mp3") is None, what="dismissed")
        assert json.loads((gui.services.store.data_dir / "rejected.json").read_text()) == []
    fail_on_error_logs(caplog)


async def test_at_most_max_files_are_taken_from_one_drop(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    async with simulate(shared_view(tmp_path, broker.http)) as gui:
        user = gui.user
        await user.open("/")
        # Unreadable files: cheap, and each one still makes a row.
        await upload_files(user, *((f"f{n:02d}.bin", b"junk" * 50) for n in range(12)))
        await user.should_see(
            "At most 10 files at once: 2 files were not uploaded.", retries=PATIENCE
        )
        rows = await eventually(lambda: len(table_rows(user)) == 10 and table_rows(user))
        assert {r["name"] for r in rows} == {f"f{n:02d}.bin" for n in range(10)}
    fail_on_error_logs(caplog)


async def test_language_and_task_pickers_reach_the_broker(
    tmp_path: Path, broker: Broker, null_worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    async with simulate(shared_view(tmp_path, broker.http)) as gui:
        user = gui.user
        await user.open("/")
        await user.should_see("Auto-detect")
        language = next(iter(user.find(marker="language").elements))
        task = next(iter(user.find(marker="task").elements))
        assert isinstance(language, ui.select) and isinstance(task, ui.toggle)
        assert isinstance(language.options, dict)  # a list or a dict: a dict of labels here
        assert "ru" in language.options and language.options["ru"] == "Russian (ru)"
        language.set_value("ru")
        task.set_value("translate")
        await upload_files(user, ("russian.wav", wav_bytes(1.0)))
        await eventually(lambda: done_row(user, "russian.wav"), what="the upload to finish")
        (job,) = broker.jobs()
        assert (job["language"], job["task"]) == ("ru", "translate")

        # The choice is the browser's: a new page shows it again.
        await user.open("/")
        await user.should_see("Russian (ru)")
    fail_on_error_logs(caplog)


async def test_transcript_page_shows_segments_copies_and_downloads(
    tmp_path: Path, broker: Broker, null_worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    reply = await stream_pcm(broker.ws, tone(3.0), name="meeting notes.wav")
    job_id = reply.of("final")[0]["job_id"]
    async with simulate(shared_view(tmp_path, broker.http)) as gui:
        user = gui.user
        await user.open(f"/jobs/{job_id}")
        await user.should_see(marker="job-name", content="meeting notes.wav", retries=PATIENCE)
        await user.should_see(marker="job-status", content="Done")
        await user.should_see(marker="transcript-text", content="[null engine] 3.0 s of audio")
        segments = next(iter(user.find(marker="segments").elements))
        assert isinstance(segments, ui.table)
        assert segments.rows == [
            {"id": 0, "start": "0:00.0", "end": "0:03.0", "text": "[null engine] 3.0 s of audio"}
        ]

        user.find(marker="copy").click()
        await user.should_see("Transcript copied to the clipboard")

        user.find(marker="download-srt").click()
        srt = (await user.download.next(timeout=10)).text
        assert srt.startswith("1\n00:00:00,000 --> 00:00:03,000\n[null engine]")
        user.find(marker="download-json").click()
        data = json.loads((await user.download.next(timeout=10)).content)
        assert data["job_id"] == job_id
        assert data["segments"][0]["text"] == "[null engine] 3.0 s of audio"
        user.find(marker="download-vtt").click()
        assert (await user.download.next(timeout=10)).text.startswith("WEBVTT")

        user.find(marker="back").click()
        await user.should_see("Transcribe files")
    fail_on_error_logs(caplog)


async def test_transcript_page_turns_into_the_transcript_when_the_job_finishes(
    tmp_path: Path, broker: Broker, null_worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    async with simulate(shared_view(tmp_path, broker.http)) as gui:
        user = gui.user
        await user.open("/")
        async with websockets.connect(broker.ws) as ws:
            await ws.send(start_message(name="slow.wav"))
            job_id = json.loads(await ws.recv())["job_id"]
            await eventually(lambda: job_id in gui.services.state.jobs, what="the job event")
            await user.open(f"/jobs/{job_id}")
            await user.should_see(marker="job-pending", retries=PATIENCE)
            for packet in packets(tone(1.0)):
                await ws.send(packet)
            await ws.send(json.dumps({"type": "end"}))
            async for raw in ws:
                if json.loads(raw)["type"] == "final":
                    break
        await user.should_see(marker="transcript-text", content="[null engine]", retries=PATIENCE)
    fail_on_error_logs(caplog)


async def test_unknown_job_page_says_so(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    async with simulate(shared_view(tmp_path, broker.http)) as gui:
        await gui.user.open("/jobs/0123456789abcdef")
        await gui.user.should_see("No such job", retries=PATIENCE)
        await gui.user.open("/jobs/not%20an%20id")  # never sent to the broker
        await gui.user.should_see("No such job", retries=PATIENCE)
    fail_on_error_logs(caplog)


async def test_overloaded_upload_keeps_a_row_with_retry_across_a_gui_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = start_broker(tmp_path, "--max-active", "1")
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        settings = shared_view(tmp_path, broker.http)
        async with websockets.connect(broker.ws) as hold:
            await hold.send(start_message(name="holds-the-only-slot.wav"))
            assert json.loads(await hold.recv())["type"] == "accepted"
            async with simulate(settings) as gui:
                await gui.user.open("/")
                await upload_files(gui.user, ("busy.wav", wav_bytes(1.0)))
                row = await eventually(
                    lambda: (r := row_named(gui.user, "busy.wav")) and r["retry"] and r,
                    what="the overloaded row",
                )
                assert row["detail"] == "Server overloaded, try later"
                assert row["label"] == "Rejected"
        # The GUI restarts (the farm has no record of a rejection: the GUI kept it).
        saved = json.loads((settings.data_dir / "rejected.json").read_text())
        assert [(r["name"], r["kind"]) for r in saved] == [("busy.wav", "overloaded")]
        wait_for(lambda: broker.farm()["streams"]["active"] == 0, 30, "the held slot to free")
        async with simulate(settings) as gui:
            await gui.user.open("/")
            row = await eventually(lambda: row_named(gui.user, "busy.wav"), what="the kept row")
            assert row["retry"] and row["detail"] == "Server overloaded, try later"
            gui.user.find(marker="jobs").trigger("retry", {"key": row["key"], "name": "busy.wav"})
            await gui.user.should_see("Retrying busy.wav")
            await eventually(lambda: done_row(gui.user, "busy.wav"), what="the retried upload")
            assert [r for r in table_rows(gui.user) if r["status"] == "rejected"] == []
            assert not any(gui.services.store.uploads_dir.iterdir())
        assert json.loads((settings.data_dir / "rejected.json").read_text()) == []
    finally:
        worker.process.stop()
        broker.process.stop()
    fail_on_error_logs(caplog)


async def test_broker_down_shows_a_banner_and_the_page_recovers_when_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = start_broker(tmp_path)
    port = broker.http.rsplit(":", 1)[1]
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        await stream_pcm(broker.ws, tone(1.0), name="before.wav")
        async with simulate(shared_view(tmp_path, broker.http)) as gui:
            user = gui.user
            await user.open("/")
            await eventually(lambda: done_row(user, "before.wav"), what="the first job")

            broker.process.stop()
            await user.should_see(marker="broker-banner", retries=PATIENCE)
            await user.should_see("is unreachable (connection refused)", retries=PATIENCE)
            await user.should_see("Broker offline")
            user.find(marker="refresh").click()
            await user.should_see(
                "The broker is unreachable (connection refused)", retries=PATIENCE
            )
            # The page keeps working: reloading it shows the last known jobs.
            await user.open("/")
            assert row_named(user, "before.wav") is not None
            await user.open("/")
            await upload_files(user, ("while-down.wav", wav_bytes(1.0)))
            row = await eventually(
                lambda: (r := row_named(user, "while-down.wav")) and r["retry"] and r,
                what="the unreachable row",
            )
            assert row["detail"] == "Broker unreachable: connection refused"

            broker = start_broker(tmp_path, "--port", port, data_dir=broker.data_dir)
            worker.process.stop()
            worker = start_worker(tmp_path, broker.zmq, engine="null")
            await eventually(lambda: gui.services.state.connection.up, 60, "the broker back")
            await user.should_not_see(marker="broker-banner", retries=PATIENCE)
            await user.should_see("Broker online")
            assert done_row(user, "before.wav") is not None, "jobs are reloaded"
            user.find(marker="jobs").trigger("retry", {"key": row["key"], "name": "while-down"})
            await eventually(lambda: done_row(user, "while-down.wav"), what="the retry")
    finally:
        worker.process.stop()
        broker.process.stop()
    fail_on_error_logs(caplog)


async def test_a_page_that_fails_shows_no_traceback(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    async with simulate(shared_view(tmp_path, broker.http)) as gui:

        @ui.page("/boom")
        def boom() -> None:
            raise RuntimeError("secret internals")

        response = await gui.user.http_client.get("/boom")
        assert response.status_code == 500
        assert "This page could not be shown" in response.text
        assert "secret internals" not in response.text
        assert "Traceback" not in response.text
        russian = await gui.user.http_client.get("/boom", headers={"Accept-Language": "ru"})
        assert "Не удалось показать страницу" in russian.text and '<html lang="ru">' in russian.text
    fail_on_error_logs(caplog, allowed=("secret internals",))
