"""API tokens: no token or a wrong one is refused; one token never sees another's jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.farm import ROOT, Broker, start_broker, start_worker
from tests.wsclient import Reply, read_all, start_message, stream_pcm, tone

ALPHA, BETA = "alpha-token-123", "beta-token-456"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Broker]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{BETA}\n")
    broker = start_broker(tmp_path, "--api-tokens", ALPHA, "--api-tokens-file", str(tokens),
                          "--max-streams-per-token", "1")  # fmt: skip
    broker.token = ALPHA
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    broker.wait_workers(1)
    yield broker
    worker.process.stop()
    broker.process.stop()


def _get(broker: Broker, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(broker.http + path, headers=headers, timeout=10)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ALPHA}]
)
async def test_websocket_without_a_valid_token_is_closed_1008(
    secured: Broker, headers: dict[str, str]
) -> None:
    async with websockets.connect(secured.ws, additional_headers=headers) as ws:
        await ws.send(start_message())
        reply = await read_all(ws, Reply())
    assert reply.messages[0]["type"] == "error" and reply.messages[0]["code"] == "unauthorized"
    assert reply.close_code == 1008
    assert secured.farm()["workers"]  # the broker is still serving
    assert _get(secured, "/healthz").status_code == 200


async def test_rest_needs_a_token_and_jobs_are_private_to_it(secured: Broker) -> None:
    for path in ("/v1/jobs", "/v1/farm", "/v1/events"):
        response = _get(secured, path)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert _get(secured, "/v1/jobs", "nope").status_code == 401
    for path in ("/healthz", "/metrics"):
        assert _get(secured, path).status_code == 200

    url = f"{secured.ws}?token={ALPHA}"  # browsers cannot set WebSocket headers
    final = (await stream_pcm(url, tone(1.0))).last
    assert final["type"] == "final"
    job_id = final["job_id"]
    got = _get(secured, f"/v1/jobs/{job_id}", ALPHA)
    assert got.json()["status"] == "done", got.text
    assert "owner" not in _get(secured, f"/v1/jobs/{job_id}", ALPHA).json()
    assert _get(secured, f"/v1/jobs/{job_id}/transcript", ALPHA).status_code == 200
    assert _get(secured, f"/v1/jobs/{job_id}", BETA).status_code == 404
    assert _get(secured, f"/v1/jobs/{job_id}/transcript", BETA).status_code == 404
    assert _get(secured, "/v1/jobs", BETA).json()["jobs"] == []
    assert [j["id"] for j in _get(secured, "/v1/jobs", ALPHA).json()["jobs"]] == [job_id]
    async with websockets.connect(
        secured.ws, additional_headers={"Authorization": f"Bearer {BETA}"}
    ) as ws:
        await ws.send(json.dumps({"type": "resume", "job_id": job_id}))
        reply = await read_all(ws, Reply())
    assert reply.messages[0]["code"] == "not_found"


async def test_streams_per_token_are_limited(secured: Broker) -> None:
    headers = {"Authorization": f"Bearer {ALPHA}"}
    async with websockets.connect(secured.ws, additional_headers=headers) as held:
        await held.send(start_message())
        assert json.loads(await held.recv())["type"] == "accepted"
        async with websockets.connect(secured.ws, additional_headers=headers) as ws:
            await ws.send(start_message())
            second = await read_all(ws, Reply())
        assert (
            second.messages[0]["code"] == "overloaded" and "token" in second.messages[0]["detail"]
        )
        other = await stream_pcm(f"{secured.ws}?token={BETA}", tone(0.5))
        assert other.last["type"] == "final"


def test_source_cli_sends_its_token(secured: Broker, tmp_path: Path) -> None:
    clip = ROOT / "tests/fixtures/audio/jfk.wav"
    base = [sys.executable, "-m", "source", "--url", secured.ws, "--out", str(tmp_path), "--quiet"]
    refused = subprocess.run([*base, str(clip)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 4 and "token" in refused.stderr
    ok = subprocess.run([*base, "--token", ALPHA, str(clip)], capture_output=True, text=True,
                        timeout=60)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "jfk.json").exists()
