"""Each person sees their own jobs: token roles (user, service acting for a person
through X-Whisperfarm-User, admin), and the header's bad values refused with a 400."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.farm import Broker, start_broker, start_worker
from tests.wsclient import Reply, read_all, start_message, stream_pcm, tone

ADMIN, GUI, USER, PLAIN = "admin-token-1", "gui-token-22", "user-token-333", "plain-token-4444"


@pytest.fixture
def roles(tmp_path: Path) -> Iterator[Broker]:
    broker = start_broker(
        tmp_path, "--api-tokens", f"admin:{ADMIN},service:{GUI},user:{USER},{PLAIN}"
    )
    broker.token = ADMIN
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    broker.wait_workers(1)
    yield broker
    worker.process.stop()
    broker.process.stop()


@pytest.fixture
def open_farm(tmp_path: Path) -> Iterator[Broker]:
    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    broker.wait_workers(1)
    yield broker
    worker.process.stop()
    broker.process.stop()


def _headers(token: str | None, person: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return headers | ({"X-Whisperfarm-User": person} if person is not None else {})


def _get(broker: Broker, path: str, token: str | None, person: str | None = None) -> httpx.Response:
    return httpx.get(broker.http + path, headers=_headers(token, person), timeout=10)


def _ids(broker: Broker, token: str | None, person: str | None = None) -> set[str]:
    return {j["id"] for j in _get(broker, "/v1/jobs", token, person).json()["jobs"]}


async def _stream(broker: Broker, token: str | None, person: str | None = None) -> str:
    reply = await stream_pcm(broker.ws, tone(0.5), headers=_headers(token, person))
    assert reply.last["type"] == "final", reply.messages
    job_id: str = reply.last["job_id"]
    return job_id


async def test_each_person_sees_only_their_own_jobs(roles: Broker) -> None:
    alice = await _stream(roles, GUI, "alice")
    bob = await _stream(roles, GUI, "bob@example.org")
    mine = await _stream(roles, USER)
    plain = await _stream(roles, PLAIN)

    assert _ids(roles, GUI, "alice") == {alice}
    assert _ids(roles, GUI, "bob@example.org") == {bob}
    assert _ids(roles, GUI, "carol") == set()
    assert _ids(roles, USER) == {mine}
    assert _ids(roles, PLAIN) == {plain}  # a token without a role: a user, as before roles
    assert _ids(roles, ADMIN) == {alice, bob, mine, plain}
    assert _ids(roles, GUI) == {alice, bob, mine, plain}  # the GUI's own (admin) view

    job = _get(roles, f"/v1/jobs/{alice}", GUI, "alice").json()
    assert job["person"] == "alice" and "owner" not in job
    for path in (f"/v1/jobs/{alice}", f"/v1/jobs/{alice}/transcript"):
        assert _get(roles, path, GUI, "alice").status_code == 200
        assert _get(roles, path, ADMIN).status_code == 200
        for token, person in ((GUI, "bob@example.org"), (USER, None), (PLAIN, None)):
            refused = _get(roles, path, token, person)
            assert refused.status_code == 404, (token, person)  # not 403: no leak
    async with websockets.connect(roles.ws, additional_headers=_headers(GUI, "bob")) as ws:
        await ws.send(json.dumps({"type": "resume", "job_id": alice}))
        reply = await read_all(ws, Reply())
    assert reply.messages[0]["code"] == "not_found"


async def test_event_feed_carries_only_the_persons_jobs(roles: Broker) -> None:
    seen: list[dict[str, object]] = []

    async def watch() -> None:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("GET", roles.http + "/v1/events", headers=_headers(GUI, "bob")) as r,
        ):
            event = ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "job":
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["status"] == "done":
                        return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.5)  # subscribed before the streams start (order, not speed)
    await _stream(roles, GUI, "alice")
    bob = await _stream(roles, GUI, "bob")
    await asyncio.wait_for(watcher, 30)
    assert seen and {e["id"] for e in seen} == {bob}


@pytest.mark.parametrize(
    ("token", "person", "detail"),
    [
        (GUI, "", "empty"),
        (GUI, "x" * 129, "longer than 128"),
        (GUI, "al\tice", "control characters"),
        (USER, "alice", "only a service token"),
        (ADMIN, "alice", "only a service token"),
    ],
)
async def test_bad_person_header_is_a_clear_400(
    roles: Broker, token: str, person: str, detail: str
) -> None:
    for path in ("/v1/jobs", "/v1/events", "/v1/farm"):
        refused = _get(roles, path, token, person)
        assert refused.status_code == 400 and detail in refused.json()["detail"], refused.text
    async with websockets.connect(roles.ws, additional_headers=_headers(token, person)) as ws:
        await ws.send(start_message())
        reply = await read_all(ws, Reply())
    assert reply.messages[0]["code"] == "bad_message" and detail in reply.messages[0]["detail"]
    assert reply.close_code == 1008
    openai = httpx.post(roles.http + "/v1/audio/transcriptions", headers=_headers(token, person),
                        files={"file": ("a.wav", b"RIFF")}, data={"model": "whisper-1"},
                        timeout=10)  # fmt: skip
    assert openai.status_code == 400 and detail in openai.text
    assert _ids(roles, ADMIN) == set()  # nothing was created
    await _stream(roles, GUI, "alice")  # and the broker still serves a good one
    assert len(_ids(roles, GUI, "alice")) == 1


async def test_without_tokens_the_header_still_separates_people(open_farm: Broker) -> None:
    alice = await _stream(open_farm, None, "alice")
    bob = await _stream(open_farm, None, "bob")
    assert _ids(open_farm, None, "alice") == {alice}
    assert _ids(open_farm, None, "bob") == {bob}
    assert _get(open_farm, f"/v1/jobs/{alice}", None, "bob").status_code == 404
    assert _ids(open_farm, None) == {alice, bob}  # nobody named: every job, as before


async def test_stream_limit_is_per_person_for_a_service_token(tmp_path: Path) -> None:
    broker = start_broker(
        tmp_path, "--api-tokens", f"service:{GUI}", "--max-streams-per-token", "1"
    )
    broker.token = GUI
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        alice = _headers(GUI, "alice")
        async with websockets.connect(broker.ws, additional_headers=alice) as held:
            await held.send(start_message())
            assert json.loads(await held.recv())["type"] == "accepted"
            async with websockets.connect(broker.ws, additional_headers=alice) as ws:
                await ws.send(start_message())
                second = await read_all(ws, Reply())
            assert second.messages[0]["code"] == "overloaded"
            assert (await _stream(broker, GUI, "bob")) != ""  # another person: not held back
    finally:
        worker.process.stop()
        broker.process.stop()
