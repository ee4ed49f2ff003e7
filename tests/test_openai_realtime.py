"""`WS /v1/realtime?intent=transcription` with the real `openai` SDK's realtime client.

A real broker and a tiny.en worker on loopback; speech made by espeak-ng, two sentences with
silence between them, sent as OpenAI's clients send it (base64 appends). What a client
sees: one `completed` per spoken turn with its words, deltas that add up to it, turns ended
by server VAD or by the client's commits, `clear`, G.711 input, every bad event answered
with an `error` event on a session that goes on — and the session stored as a job.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import websockets
from openai import AsyncOpenAI

from tests.farm import Broker, Worker, start_broker, tiny_farm
from tests.speech import SENTENCES, require_tool, synthesize, word_error_rate
from tests.worker_support import read_wav

pytestmark = [pytest.mark.model, pytest.mark.slow]

RATE = 24_000
CHUNK_S = 0.1
EVENT_WAIT_S = 60.0
"""A guard against a hung session, not a measure of speed."""
Event = dict[str, Any]


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Worker]]:
    yield from tiny_farm(tmp_path_factory.mktemp("realtime"))


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Two sentences as 24 kHz 16-bit mono PCM."""
    tmp = tmp_path_factory.mktemp("speech")
    pcm = []
    for index, text in enumerate(SENTENCES[:2]):
        path = synthesize(text, tmp / f"s{index}.wav", rate=RATE, channels=1)
        pcm.append(read_wav(path)[0])
    return pcm


def silence(seconds: float, rate: int = RATE, width: int = 2) -> bytes:
    return bytes(round(seconds * rate) * width)


@asynccontextmanager
async def session(broker: Broker, **options: Any) -> AsyncIterator[Any]:
    client = AsyncOpenAI(base_url=broker.http + "/v1", api_key=broker.token or "unused")
    async with client.realtime.connect(
        model="whisper-1", extra_query={"intent": "transcription"}, **options
    ) as connection:
        yield connection


async def next_event(connection: Any) -> Event:
    async with asyncio.timeout(EVENT_WAIT_S):
        data: Event = json.loads(await connection.recv_bytes())
    return data


async def events_until(connection: Any, done: Callable[[Event], bool]) -> list[Event]:
    events = []
    while True:
        events.append(await next_event(connection))
        if done(events[-1]):
            return events


def of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["type"] == kind]


async def configure(connection: Any, **audio_input: Any) -> Event:
    """A `session.update`; returns the `session.updated` (or the `error`)."""
    await connection.send(
        {
            "type": "session.update",
            "session": {"type": "transcription", "audio": {"input": audio_input}},
        }
    )
    return (await events_until(connection, lambda e: e["type"] in ("session.updated", "error")))[-1]


async def append(connection: Any, audio: bytes, chunk: int, real_time: float | None = None) -> None:
    """Audio in appends of `chunk` bytes; at real time when `real_time` gives the rate in
    bytes per second."""
    for at in range(0, len(audio), chunk):
        await connection.input_audio_buffer.append(
            audio=base64.b64encode(audio[at : at + chunk]).decode()
        )
        if real_time:
            await asyncio.sleep(chunk / real_time)


async def send_raw(connection: Any, text: str) -> None:
    await connection.send_raw(text)


def check_turn(events: list[Event], sentence: str) -> Event:
    completed = of(events, "conversation.item.input_audio_transcription.completed")
    assert len(completed) == 1, completed
    turn = completed[0]
    assert turn["content_index"] == 0
    deltas = [
        e["delta"]
        for e in of(events, "conversation.item.input_audio_transcription.delta")
        if e["item_id"] == turn["item_id"]
    ]
    assert "".join(deltas) == turn["transcript"]
    assert word_error_rate(sentence, turn["transcript"]) <= 0.15, turn["transcript"]
    return turn


def assert_ends(kinds: list[str], vad: bool) -> None:
    """A turn's end: its audio stopped (with VAD), committed and its item added, then the
    close's last words (deltas, if any), then its transcription completed."""
    stopped = ["input_audio_buffer.speech_stopped"] * vad + [
        "input_audio_buffer.committed",
        "conversation.item.added",
    ]
    at = kinds.index(stopped[0])
    assert kinds[at : at + len(stopped)] == stopped, kinds
    tail = kinds[at + len(stopped) :]
    assert tail[-2:] == [
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
    ], kinds
    assert set(tail[:-2]) <= {"conversation.item.input_audio_transcription.delta"}, kinds


def test_server_vad_gives_one_completed_turn_per_sentence(
    farm: tuple[Broker, Worker], speech: list[bytes]
) -> None:
    broker, _ = farm

    async def run() -> list[Event]:
        async with session(broker) as connection:
            created = await next_event(connection)
            assert created["type"] == "session.created"
            assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
            assert broker.metric("whisperfarm_broker_realtime_sessions") == 1
            updated = await configure(
                connection,
                format={"type": "audio/pcm", "rate": RATE},
                transcription={"model": "whisper-1", "language": "en"},
                turn_detection={"type": "server_vad", "silence_duration_ms": 600},
            )
            assert updated["type"] == "session.updated", updated
            vad = updated["session"]["audio"]["input"]["turn_detection"]
            assert vad["silence_duration_ms"] == 600
            audio = silence(0.5) + speech[0] + silence(2.0) + speech[1] + silence(2.0)
            await append(connection, audio, round(RATE * 2 * CHUNK_S), real_time=RATE * 2)
            events: list[Event] = []
            while len(of(events, "conversation.item.done")) < 2:
                events.append(await next_event(connection))
            return events

    events = asyncio.run(run())
    items = [e["item_id"] for e in of(events, "input_audio_buffer.speech_started")]
    assert len(items) == 2, [e["type"] for e in events]
    for item, sentence in zip(items, SENTENCES[:2], strict=True):
        turn = [e for e in events if item in (e.get("item_id"), e.get("item", {}).get("id"))]
        check_turn(turn, sentence)
        kinds = [e["type"] for e in turn]
        assert kinds[0] == "input_audio_buffer.speech_started"
        assert_ends(kinds, vad=True)
    committed = of(events, "input_audio_buffer.committed")
    assert [c["previous_item_id"] for c in committed] == [None, items[0]]
    assert broker.metric("whisperfarm_broker_realtime_turns_total", {"outcome": "completed"}) >= 2
    # The session is a job: once the client leaves, its whole transcript is stored.
    job = broker.wait_job(broker.jobs()[0]["id"], {"done"})
    assert job["name"] == "realtime" and job["live"] is True
    assert broker.metric("whisperfarm_broker_realtime_sessions") == 0
    transcript = broker.get(f"/v1/jobs/{job['id']}/transcript").text
    assert word_error_rate(" ".join(SENTENCES[:2]), transcript) <= 0.15, transcript


def test_server_vad_says_speech_started_as_the_voice_begins_before_any_word(
    farm: tuple[Broker, Worker], speech: list[bytes]
) -> None:
    """A second of silence, then the first 0.45 s of a sentence, and nothing more for now:
    the turn begins where the voice does (less the prefix padding), as the worker's voice
    activity tells it, before its words are decoded (tests/test_worker_live.py)."""
    broker, _ = farm
    onset = round(RATE * 0.45) * 2

    async def run() -> tuple[list[Event], list[Event]]:
        async with session(broker) as connection:
            await next_event(connection)
            await configure(connection, format={"type": "audio/pcm", "rate": RATE})
            await append(connection, silence(1.0) + speech[0][:onset], 4800)
            begun = await events_until(
                connection, lambda e: e["type"] == "input_audio_buffer.speech_started"
            )
            await append(connection, speech[0][onset:] + silence(1.5), 4800)
            rest = await events_until(connection, lambda e: e["type"] == "conversation.item.done")
            return begun, rest

    begun, rest = asyncio.run(run())
    started = begun[-1]
    assert not of(begun, "conversation.item.input_audio_transcription.delta")
    assert 650 <= started["audio_start_ms"] <= 850, started  # 1 s less 300 ms of padding
    assert not of(rest, "input_audio_buffer.speech_started"), "one turn, begun once"
    turn = check_turn(rest, SENTENCES[0])
    assert turn["item_id"] == started["item_id"]


def test_manual_commits_end_turns_and_clear_drops_audio(
    farm: tuple[Broker, Worker], speech: list[bytes]
) -> None:
    broker, _ = farm

    async def run() -> list[list[Event]]:
        turns = []
        async with session(broker) as connection:
            await next_event(connection)
            updated = await configure(connection, turn_detection=None)
            assert updated["session"]["audio"]["input"]["turn_detection"] is None
            # Cleared at once: none of this sentence is ever transcribed.
            await append(connection, speech[1], 9600)
            await connection.input_audio_buffer.clear()
            cleared = await events_until(
                connection, lambda e: e["type"] == "input_audio_buffer.cleared"
            )
            assert not of(cleared, "conversation.item.input_audio_transcription.completed")
            for sentence in speech:
                await append(connection, silence(0.3) + sentence + silence(0.3), 9600)
                await connection.input_audio_buffer.commit()
                turns.append(
                    await events_until(
                        connection,
                        lambda e: e["type"] == "conversation.item.done",
                    )
                )
                # The language and prompt may change between turns (the next turn's).
                prompt = {"language": "en", "prompt": "The weather forecast."}
                retuned = await configure(connection, turn_detection=None, transcription=prompt)
                assert retuned["type"] == "session.updated", retuned
                assert retuned["session"]["audio"]["input"]["transcription"]["prompt"] == (
                    "The weather forecast."
                )
        return turns

    turns = asyncio.run(run())
    for events, sentence in zip(turns, SENTENCES[:2], strict=True):
        check_turn(events, sentence)
        assert not of(events, "input_audio_buffer.speech_started"), "no VAD events without VAD"
        assert_ends([e["type"] for e in events], vad=False)


def mu_law(pcm: bytes, tmp: Path) -> bytes:
    """24 kHz PCM as 8 kHz G.711 μ-law, encoded by ffmpeg."""
    ffmpeg = require_tool("ffmpeg")
    done = subprocess.run(
        [ffmpeg, "-nostdin", "-loglevel", "error", "-f", "s16le", "-ar", str(RATE), "-ac", "1",
         "-i", "-", "-ar", "8000", "-f", "mulaw", "-"],
        input=pcm, capture_output=True, check=True,
    )  # fmt: skip
    return done.stdout


def test_g711_mu_law_is_transcribed(
    farm: tuple[Broker, Worker], speech: list[bytes], tmp_path: Path
) -> None:
    broker, _ = farm
    audio = mu_law(silence(0.3) + speech[0] + silence(0.3), tmp_path)

    async def run() -> list[Event]:
        async with session(broker) as connection:
            await next_event(connection)
            updated = await configure(
                connection, format={"type": "audio/pcmu"}, turn_detection=None
            )
            assert updated["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
            await append(connection, audio, 1600)
            await connection.input_audio_buffer.commit()
            return await events_until(connection, lambda e: e["type"] == "conversation.item.done")

    check_turn(asyncio.run(run()), SENTENCES[0])


BAD_EVENTS: list[tuple[str, str, str | None]] = [
    ("not json", "the event is not JSON", None),
    ('["a list"]', "an event must be a JSON object", None),
    ('{"type": "response.create"}', "unknown event type", "type"),
    ('{"type": "input_audio_buffer.append", "audio": "***"}', "not valid base64", "audio"),
    ('{"type": "input_audio_buffer.append", "audio": 7}', "base64 string", "audio"),
    ('{"type": "input_audio_buffer.append", "audio": "AA=="}', "odd number of bytes", "audio"),
    ('{"type": "input_audio_buffer.commit", "event_id": "c1"}', "buffer is empty", None),
    ('{"type": "session.update"}', "needs a session", "session"),
    ('{"type": "session.update", "session": {"type": "realtime"}}', "session.type", "session.type"),
    (
        '{"type": "session.update", "session": {"type": "transcription", '
        '"audio": {"input": {"format": {"type": "audio/opus"}}}}}',
        "format.type",
        "session.audio.input.format.type",
    ),
    (
        '{"type": "session.update", "session": {"type": "transcription", "audio": {"input": '
        '{"turn_detection": {"type": "server_vad", "silence_duration_ms": 5}}}}}',
        "silence_duration_ms",
        "session.audio.input.turn_detection.silence_duration_ms",
    ),
    (
        '{"type": "session.update", "session": {"type": "transcription", "audio": {"input": '
        '{"transcription": {"model": "no-such-model"}}}}}',
        "not served here",
        "session.audio.input.transcription.model",
    ),
]


def test_bad_events_get_an_error_event_and_the_session_goes_on(
    farm: tuple[Broker, Worker], speech: list[bytes]
) -> None:
    broker, _ = farm

    async def run() -> None:
        async with session(broker) as connection:
            await next_event(connection)
            for text, message, param in BAD_EVENTS:
                await send_raw(connection, text)
                answer = await next_event(connection)
                assert answer["type"] == "error", (text, answer)
                assert message in answer["error"]["message"], (text, answer)
                assert answer["error"]["param"] == param, (text, answer)
                if '"event_id"' in text:  # the client event at fault is named
                    assert answer["error"]["event_id"] == json.loads(text)["event_id"]
            assert answer["error"]["type"] == "invalid_request_error"
            # The session still works: audio goes in, a turn comes out ...
            updated = await configure(connection, turn_detection=None)
            assert updated["type"] == "session.updated"
            await append(connection, speech[0], 9600)
            # ... and the audio format is fixed once audio has been sent.
            refused = await configure(connection, format={"type": "audio/pcma"})
            assert refused["type"] == "error" and "format" in refused["error"]["param"]
            await connection.input_audio_buffer.commit()
            events = await events_until(connection, lambda e: e["type"] == "conversation.item.done")
            check_turn(events, SENTENCES[0])

    asyncio.run(run())


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker with a token and room for one stream (no worker: none is reached)."""
    broker = start_broker(
        tmp_path_factory.mktemp("guarded"), "--api-tokens", "sesame", "--max-active", "1",
        "--no-worker-timeout", "1",
    )  # fmt: skip
    broker.token = "sesame"
    yield broker
    broker.process.stop()


def realtime_url(broker: Broker) -> str:
    return broker.http.replace("http://", "ws://") + "/v1/realtime?intent=transcription"


async def first_and_close(url: str, **options: Any) -> tuple[Event, int | None]:
    async with websockets.connect(url, **options) as ws:
        first = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), EVENT_WAIT_S)
        return first, ws.close_code


def test_a_session_without_a_valid_token_is_refused(guarded: Broker) -> None:
    url = realtime_url(guarded)
    first, code = asyncio.run(first_and_close(url))
    assert first["type"] == "error" and first["error"]["code"] == "invalid_api_key"
    assert code == 1008
    wrong = {"additional_headers": {"Authorization": "Bearer wrong"}}
    first, code = asyncio.run(first_and_close(url, **wrong))
    assert first["error"]["code"] == "invalid_api_key" and code == 1008


def test_an_overloaded_farm_sends_an_error_then_closes_1013(guarded: Broker) -> None:
    url = realtime_url(guarded)

    async def run() -> None:
        # A browser's way to give its key: the subprotocol; this session takes the one slot.
        protocols = ["realtime", "openai-insecure-api-key.sesame"]
        async with websockets.connect(url, subprotocols=protocols) as holder:  # type: ignore[arg-type]
            assert holder.subprotocol == "realtime"
            assert json.loads(await holder.recv())["type"] == "session.created"
            await holder.send(b"\0\0")  # audio goes in appends, not in binary frames
            refused = json.loads(await holder.recv())
            assert refused["type"] == "error" and "base64" in refused["error"]["message"]
            async with session(guarded) as connection:
                refused = await next_event(connection)
                assert refused["type"] == "error"
                assert refused["error"]["code"] == "overloaded"
                assert refused["error"]["type"] == "rate_limit_error"
                with pytest.raises(Exception):  # noqa: B017 - the SDK's closed-connection error
                    await next_event(connection)
                assert connection._connection.close_code == 1013
        # The slot is free again once the holder leaves (without audio: no job).
        jobs = len(guarded.jobs())
        async with session(guarded) as connection:
            assert (await next_event(connection))["type"] == "session.created"
        assert len(guarded.jobs()) == jobs

    asyncio.run(run())


def test_a_session_without_the_transcription_intent_is_refused(guarded: Broker) -> None:
    url = realtime_url(guarded).replace("?intent=transcription", "?model=gpt-realtime")
    first, code = asyncio.run(first_and_close(url, subprotocols=["realtime",
                                              "openai-insecure-api-key.sesame"]))  # fmt: skip
    assert first["type"] == "error" and "intent=transcription" in first["error"]["message"]
    assert code == 1003


def test_a_farm_error_mid_session_is_an_error_event_then_its_close_code(guarded: Broker) -> None:
    async def run() -> tuple[Event, int | None]:
        async with session(guarded) as connection:
            assert (await next_event(connection))["type"] == "session.created"
            await append(connection, silence(0.5), 4800)  # no worker takes it: it fails
            failure = await next_event(connection)
            with pytest.raises(Exception):  # noqa: B017 - the SDK's closed-connection error
                await next_event(connection)
            return failure, connection._connection.close_code

    failure, code = asyncio.run(run())
    assert failure["type"] == "error" and failure["error"]["code"] == "no_worker", failure
    assert failure["error"]["type"] == "server_error" and code == 1013
    assert guarded.jobs()[0]["status"] == "failed"
