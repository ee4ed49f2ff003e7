"""The OpenAI edge, driven by the real `openai` SDK against a real broker and workers.

Content tests run the bundled tiny.en model; error tests a `null` worker (fast), or a
scripted worker that fails every stream it is given.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import zmq
from openai import OpenAI
from websockets.sync.client import connect

from tests.farm import Broker, start_broker, start_worker
from tests.speech import fixture_clips, normalize_text, synthesize, word_error_rate
from tests.worker_support import read_wav
from tests.wsclient import start_message, stream_live

JFK = Path(__file__).parent / "fixtures" / "audio" / "jfk.wav"


def client(broker: Broker, api_key: str = "unused") -> OpenAI:
    return OpenAI(base_url=broker.http + "/v1", api_key=api_key, max_retries=0, timeout=120)


def farm_serving(tmp: Path, model: str) -> Iterator[Broker]:
    """A broker and one faster-whisper worker serving `model`, for a module's tests."""
    broker = start_broker(tmp)
    worker = start_worker(tmp, broker.zmq, engine="faster-whisper", model=model, slots=4)
    broker.wait_workers(1, timeout=300)
    yield broker
    worker.process.stop()
    broker.process.stop()


@pytest.fixture(scope="module")
def model_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from farm_serving(tmp_path_factory.mktemp("farm"), "tiny.en")


def reference(name: str) -> str:
    return next(text for path, text in fixture_clips() if path.name == name)


@pytest.mark.model
def test_each_response_format_carries_the_words_and_sane_times(model_farm: Broker) -> None:
    api = client(model_farm)
    with JFK.open("rb") as f:
        plain = api.audio.transcriptions.create(model="whisper-1", file=f)
    assert word_error_rate(reference("jfk.wav"), plain.text) < 0.25
    text = api.audio.transcriptions.create(model="whisper-1", file=JFK, response_format="text")
    assert text.strip() == plain.text
    srt = api.audio.transcriptions.create(model="whisper-1", file=JFK, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ") and "country" in srt
    vtt = api.audio.transcriptions.create(model="whisper-1", file=JFK, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ") and "country" in vtt
    verbose = api.audio.transcriptions.create(
        model="tiny.en", file=JFK, response_format="verbose_json",
        timestamp_granularities=["segment"],
    )  # fmt: skip
    assert verbose.text == plain.text and verbose.language == "english"
    assert verbose.duration == pytest.approx(11.0, abs=0.1)
    segments = verbose.segments or []
    assert segments and all(0 <= s.start < s.end <= 11.1 for s in segments)
    assert [s.id for s in segments] == list(range(len(segments)))
    assert all(a.end <= b.start + 0.01 for a, b in itertools.pairwise(segments))


@pytest.mark.model
def test_verbose_json_carries_the_engines_own_figures_and_timed_words(model_farm: Broker) -> None:
    verbose = client(model_farm).audio.transcriptions.create(
        model="whisper-1", file=JFK, response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )  # fmt: skip
    segments, words = verbose.segments or [], verbose.words or []
    assert segments and all(s.tokens for s in segments)
    assert all(s.avg_logprob < 0 and 0 <= s.no_speech_prob <= 1 for s in segments)
    assert all(s.compression_ratio > 0 and s.temperature == 0.0 for s in segments)
    assert " ".join(w.word for w in words) == verbose.text
    assert all(w.start <= w.end for w in words)
    assert all(a.end <= b.start for a, b in itertools.pairwise(words))
    assert all(any(s.start <= w.start <= w.end <= s.end for s in segments) for w in words)


@pytest.mark.model
def test_the_prompt_and_temperature_reach_the_engine(model_farm: Broker) -> None:
    """A prompt with an archaic spelling of the speech's words ("naught" for "not") makes the
    model write it that way: only a prompt that reached the decoder can do that."""
    api = client(model_farm)
    plain = api.audio.transcriptions.create(model="whisper-1", file=JFK)
    prompted = api.audio.transcriptions.create(
        model="whisper-1", file=JFK, prompt="Ask naught what your kuntry can do for yu."
    )
    assert "naught" not in plain.text.lower() and "naught" in prompted.text.lower()
    hot = api.audio.transcriptions.create(
        model="whisper-1", file=JFK, temperature=0.6, response_format="verbose_json"
    )
    assert hot.segments and all(s.temperature >= 0.6 for s in hot.segments)
    with pytest.raises(openai.BadRequestError) as too_hot:
        api.audio.transcriptions.create(model="whisper-1", file=JFK, temperature=1.5)
    assert too_hot.value.body["param"] == "temperature"  # type: ignore[index]


@pytest.fixture(scope="module")
def multilingual_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A worker serving the multilingual `base` (assembled from its packages on first use)."""
    yield from farm_serving(tmp_path_factory.mktemp("multilingual"), "base")


@pytest.mark.model
@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK's, for whisper-1
def test_german_speech_is_translated_to_english(multilingual_farm: Broker, tmp_path: Path) -> None:
    german = synthesize(
        "Guten Morgen. Das Wetter ist heute sehr schön, und die Sonne scheint über der Stadt. "
        "Ich trinke gern Kaffee mit Milch.",
        tmp_path / "german.wav", voice="de",
    )  # fmt: skip
    api = client(multilingual_farm)
    translated = api.audio.translations.create(
        model="base", file=german, response_format="verbose_json"
    )
    words = set(normalize_text(translated.text).split())
    assert {"morning", "weather", "coffee", "milk"} <= words, translated.text
    # `task` is an extra field: the SDK's TranslationVerbose does not declare it
    assert (translated.to_dict()["task"], translated.language) == ("translate", "german")
    jobs = [j for j in multilingual_farm.jobs() if j["name"] == "german.wav"]
    assert [(j["task"], j["model"], j["status"]) for j in jobs] == [("translate", "base", "done")]


@pytest.mark.model
def test_a_streamed_transcription_adds_up_to_its_done_event_and_is_a_job(
    model_farm: Broker,
) -> None:
    events = list(
        client(model_farm).audio.transcriptions.create(model="whisper-1", file=JFK, stream=True)
    )
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert len(deltas) >= 2 and len(done) == 1 and events[-1] is done[0]
    assert "".join(deltas) == done[0].text
    assert word_error_rate(reference("jfk.wav"), done[0].text) < 0.25
    jobs = [j for j in model_farm.jobs() if j["name"] == "jfk.wav" and j["status"] == "done"]
    assert jobs and jobs[0]["model"] == "tiny.en"


@pytest.mark.model
def test_models_lists_what_the_workers_serve_and_the_openai_names(model_farm: Broker) -> None:
    api = client(model_farm)
    names = {m.id for m in api.models.list()}
    assert {"tiny.en", "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"} <= names
    assert api.models.retrieve("whisper-1").id == "whisper-1"
    with pytest.raises(openai.NotFoundError) as caught:
        api.models.retrieve("whisper-9")
    assert caught.value.code == "model_not_found"


@pytest.fixture
def null_farm(tmp_path: Path) -> Iterator[Broker]:
    broker = start_broker(tmp_path, "--max-upload-mb", "1", "--max-active", "1")
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    broker.wait_workers(1)
    yield broker
    worker.process.stop()
    broker.process.stop()


def test_requests_refused_before_their_audio_leave_no_job(
    null_farm: Broker, tmp_path: Path
) -> None:
    api = client(null_farm)
    with pytest.raises(openai.NotFoundError) as unknown:
        api.audio.transcriptions.create(model="large-v9", file=JFK)
    assert unknown.value.status_code == 404 and unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as garbage:
        api.audio.transcriptions.create(model="whisper-1", file=("x.wav", b"not audio" * 100))
    assert garbage.value.body["param"] == "file"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        api.audio.transcriptions.create(model="whisper-1", file=("empty.wav", b""))
    with pytest.raises(openai.BadRequestError) as granularity:
        api.audio.transcriptions.create(
            model="whisper-1", file=JFK, timestamp_granularities=["word"]
        )
    assert granularity.value.body["param"] == "timestamp_granularities"  # type: ignore[index]
    big = tmp_path / "big.wav"
    big.write_bytes(JFK.read_bytes() * 4)  # 1.4 MB > --max-upload-mb 1
    with pytest.raises(openai.APIStatusError) as large:
        api.audio.transcriptions.create(model="whisper-1", file=big)
    assert large.value.status_code == 413 and large.value.code == "file_too_large"
    assert null_farm.jobs() == []
    reply = api.audio.transcriptions.create(model="whisper-1", file=JFK)  # the farm goes on
    assert reply.text.startswith("[null engine] 11.0 s")


def test_a_full_farm_answers_429_with_retry_after(null_farm: Broker) -> None:
    with connect(null_farm.ws) as ws:
        ws.send(start_message())
        assert json.loads(ws.recv(timeout=10))["type"] == "accepted"  # the one slot is taken
        response = httpx.post(
            null_farm.http + "/v1/audio/transcriptions",
            files={"file": ("jfk.wav", JFK.read_bytes())}, data={"model": "whisper-1"},
            timeout=30,
        )  # fmt: skip
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["type"] == "rate_limit_error" and "overloaded" in error["message"].lower()


def test_a_wrong_token_is_401_in_openais_body(tmp_path: Path) -> None:
    broker = start_broker(tmp_path, "--api-tokens", "sesame")
    try:
        with pytest.raises(openai.AuthenticationError):
            client(broker, "wrong").audio.transcriptions.create(model="whisper-1", file=JFK)
        with pytest.raises(openai.AuthenticationError):
            client(broker, "wrong").models.list()
        assert [m.id for m in client(broker, "sesame").models.list()] == []
    finally:
        broker.process.stop()


class FailingWorker:
    """A worker that registers, then answers every ASSIGN with FAILED."""

    def __init__(self, endpoint: str) -> None:
        self._socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self._socket.connect(endpoint)
        self._stop = threading.Event()
        self._send("READY", "", {"engine": "scripted", "model": "tiny.en", "slots": 1})
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _send(self, command: str, job_id: str, body: dict[str, object]) -> None:
        self._socket.send_multipart(
            [b"", b"WFW1", command.encode(), job_id.encode(), json.dumps(body).encode()]
        )

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self._socket.poll(200):
                self._send("HEARTBEAT", "", {})
                continue
            _, _, command, job_id, payload = self._socket.recv_multipart()
            if command == b"ASSIGN":
                attempt = json.loads(payload)["attempt"]
                self._send("FAILED", job_id.decode(), {"attempt": attempt, "error": "GPU on fire"})

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close(linger=0)


def test_a_worker_failure_is_500_with_the_job_id_and_a_failed_job(tmp_path: Path) -> None:
    broker = start_broker(tmp_path)
    worker = FailingWorker(broker.zmq)
    try:
        broker.wait_workers(1)
        with pytest.raises(openai.InternalServerError) as failed:
            client(broker).audio.transcriptions.create(model="whisper-1", file=JFK)
        [job] = broker.jobs()
        assert job["status"] == "failed" and job["error"] == "GPU on fire"
        assert job["id"] in failed.value.message and "GPU on fire" in failed.value.message
        # Streamed, the answer has begun (200) when the worker fails: an `error` event ends it.
        stream = client(broker).audio.transcriptions.create(
            model="whisper-1", file=JFK, stream=True
        )
        with pytest.raises(openai.APIError) as streamed:
            list(stream)
        assert "GPU on fire" in streamed.value.message
        assert sorted(j["status"] for j in broker.jobs()) == ["failed", "failed"]
    finally:
        worker.close()
        broker.process.stop()


def test_fields_in_any_order_and_unknown_ones_are_accepted(null_farm: Broker) -> None:
    """OpenAI's clients send fields this farm has no use for, and some put the file first."""
    boundary = "b0undary"

    def part(name: str, value: bytes, filename: str | None = None) -> bytes:
        where = f'; filename="{filename}"' if filename else ""
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{where}\r\n\r\n'
        return head.encode() + value + b"\r\n"

    body = (
        part("file", JFK.read_bytes(), "jfk.wav")
        + part("include[]", b"logprobs")
        + part("chunking_strategy", b"auto")
        + part("model", b"whisper-1")
        + part("response_format", b"text")
        + f"--{boundary}--\r\n".encode()
    )
    response = httpx.post(
        null_farm.http + "/v1/audio/transcriptions", content=body, timeout=30,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.text.startswith("[null engine] 11.0 s")


def test_browser_callers_get_cors_headers_for_the_configured_origins(tmp_path: Path) -> None:
    broker = start_broker(tmp_path, "--cors-origins", "https://app.example")
    try:
        preflight = httpx.options(
            broker.http + "/v1/audio/transcriptions", timeout=10,
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )  # fmt: skip
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.get(broker.http + "/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        broker.process.stop()


@pytest.mark.model
def test_german_speech_is_translated_live(multilingual_farm: Broker, tmp_path: Path) -> None:
    """`task: translate` in live mode: the committed segments are English."""
    german = synthesize(
        "Guten Morgen. Das Wetter ist heute sehr schön, und die Sonne scheint über der Stadt. "
        "Ich trinke gern Kaffee mit Milch.",
        tmp_path / "german.wav", rate=16_000, channels=1, voice="de",
    )  # fmt: skip
    pcm, _ = read_wav(german)
    reply = asyncio.run(
        stream_live(multilingual_farm.ws, pcm, speed=2.0, task="translate", model="base")
    )
    final = reply.last
    assert final["type"] == "final", reply.messages[-3:]
    assert final["text"] == " ".join(s["text"] for s in reply.of("segment"))
    words = set(normalize_text(final["text"]).split())
    assert len(words & {"morning", "weather", "sun", "coffee", "milk"}) >= 3, final["text"]
