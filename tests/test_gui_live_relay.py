"""The GUI's live relay against a real broker: a recording fed as a page would feed it.

The relay is what the `/live` page's socket talks to, so these tests hold it to the
reader's view: words arrive as partials and committed segments while the audio goes in,
`stop` brings the final, and the ways it can fail reach the sink as one named kind.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.sync.client import connect

from gui.live.relay import ErrorKind, LiveRelay, LiveSession
from tests.farm import Broker, start_broker, start_worker, tiny_farm
from tests.gui_conftest import gui_settings
from tests.speech import FIXTURE_DIR, word_error_rate
from tests.tcp_cut import tcp_cut
from tests.wsclient import start_message
from whisperfarm.protocol import Final, Segment

JFK = FIXTURE_DIR / "jfk.wav"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
CHUNK_FRAMES = 1600
"""A tenth of a second at 16 kHz: a page sends whatever its worklet gathered."""


@dataclass
class Recorder:
    """A `LiveSink` that keeps everything it hears."""

    job_id: str | None = None
    partials: list[str] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    finals: list[Final] = field(default_factory=list)
    errors: list[tuple[ErrorKind, str, float | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def accepted(self, job_id: str) -> None:
        self.job_id = job_id

    def partial(self, text: str) -> None:
        self.partials.append(text)

    def segment(self, segment: Segment) -> None:
        self.segments.append(segment)

    def final(self, final: Final) -> None:
        self.finals.append(final)

    def error(self, kind: ErrorKind, detail: str, retry_after: float | None) -> None:
        self.errors.append((kind, detail, retry_after))

    def reconnecting(self) -> None:
        self.notes.append("reconnecting")

    def resumed(self) -> None:
        self.notes.append("resumed")


def jfk_pcm() -> bytes:
    with wave.open(str(JFK), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2)
        return w.readframes(w.getnframes())


@pytest.fixture(scope="module")
def tiny_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    for broker, _ in tiny_farm(tmp_path_factory.mktemp("farm"), slots=2):
        yield broker


async def feed_paced(session: LiveSession, pcm: bytes, speed: float) -> None:
    """Feed `pcm` in chunks, `speed` times faster than it was spoken."""
    step = CHUNK_FRAMES * 2
    for offset in range(0, len(pcm), step):
        session.feed(pcm[offset : offset + step])
        await asyncio.sleep(CHUNK_FRAMES / 16_000 / speed)


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_recording_fed_live_shows_partials_then_commits_the_whole_sentence(
    tmp_path: Path, tiny_broker: Broker
) -> None:
    sink = Recorder()
    relay = LiveRelay(gui_settings(tmp_path, tiny_broker.http))
    session = relay.open(sink, "en", 16_000)
    await feed_paced(session, jfk_pcm(), speed=2.0)
    assert sink.job_id is not None
    assert sink.partials, "words showed while the audio was still going in"
    session.stop()
    final = await session.final()

    assert final is not None and sink.finals == [final] and sink.errors == []
    assert word_error_rate(JFK_TEXT, final.text) <= 0.15, final.text
    assert [s.text for s in sink.segments] == [s.text for s in final.segments]
    assert [s.id for s in sink.segments] == sorted({s.id for s in sink.segments})
    job = tiny_broker.wait_job(sink.job_id, {"done"})
    assert job["name"].startswith("mic-")


def test_options_for_make_a_live_stream_with_the_gui_token(tmp_path: Path) -> None:
    settings = gui_settings(tmp_path, "http://127.0.0.1:9", broker_token="secret")
    options = LiveRelay(settings).options_for("ru")
    assert (options.live, options.language, options.token) == (True, "ru", "secret")
    assert options.url == "ws://127.0.0.1:9/v1/stream"
    assert LiveRelay(settings).options_for(None).language is None


def test_a_service_token_streams_for_the_person(tmp_path: Path) -> None:
    settings = gui_settings(tmp_path, "http://127.0.0.1:9", broker_token="service:secret")
    options = LiveRelay(settings).options_for("ru", "login:abc")
    assert (options.token, options.person) == ("secret", "login:abc")  # the role is not sent


async def test_a_broker_that_is_down_is_reported_as_broker_down(tmp_path: Path) -> None:
    sink = Recorder()
    session = LiveRelay(gui_settings(tmp_path, "http://127.0.0.1:9")).open(sink, None, 16_000)
    session.feed(b"\0\0" * 16_000)
    assert await session.final() is None
    [(kind, detail, _)] = sink.errors
    assert kind == "broker_down" and "connection refused" in detail
    assert sink.job_id is None and sink.finals == []


async def test_a_full_farm_is_reported_as_overloaded_with_its_retry_hint(tmp_path: Path) -> None:
    broker = start_broker(tmp_path, "--max-active", "1")
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        with connect(broker.ws) as hold:
            hold.send(start_message(name="held.wav"))
            assert '"accepted"' in str(hold.recv(timeout=10))
            sink = Recorder()
            session = LiveRelay(gui_settings(tmp_path, broker.http)).open(sink, None, 16_000)
            assert await session.final() is None
        [(kind, _, retry_after)] = sink.errors
        assert kind == "overloaded" and retry_after is not None
        assert [j["name"] for j in broker.jobs()] == ["held.wav"]
    finally:
        worker.process.stop()
        broker.process.stop()


async def test_cancel_drops_the_stream_and_tells_the_sink_nothing(tmp_path: Path) -> None:
    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        sink = Recorder()
        session = LiveRelay(gui_settings(tmp_path, broker.http)).open(sink, None, 16_000)
        session.feed(b"\0\0" * 4000)
        job = await _accepted(sink)
        await session.cancel()
        assert broker.wait_job(job, {"interrupted"})["status"] == "interrupted"
        assert sink.finals == [] and sink.errors == []
    finally:
        worker.process.stop()
        broker.process.stop()


async def _accepted(sink: Recorder) -> str:
    for _ in range(200):
        if sink.job_id:
            return sink.job_id
        await asyncio.sleep(0.05)
    raise AssertionError("the stream was never accepted")


async def test_a_dropped_broker_connection_is_resumed_and_no_audio_is_lost(
    tmp_path: Path,
) -> None:
    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        with tcp_cut(int(broker.http.rsplit(":", 1)[1])) as network:
            settings = gui_settings(tmp_path, f"http://127.0.0.1:{network.port}", retries=5)
            sink = Recorder()
            session = LiveRelay(settings).open(sink, None, 16_000)
            second = b"\0\0" * 16_000
            for _ in range(3):
                session.feed(second)
            await _accepted(sink)
            await asyncio.sleep(0.5)
            network.cut(1.0)  # the GUI's connection to the broker drops mid-stream
            for _ in range(3):
                session.feed(second)
                await asyncio.sleep(0.2)
            session.stop()
            final = await session.final()
        assert final is not None and sink.errors == []
        job = broker.wait_job(final.job_id, {"done"})
        assert job["frames"] == 6 * 16_000 and job["name"].startswith("mic-")
        assert sink.notes[:2] == ["reconnecting", "resumed"], "the cut dropped the connection"
    finally:
        worker.process.stop()
        broker.process.stop()
