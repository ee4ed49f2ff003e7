"""`/live/ws`, the page's microphone socket, against a real broker with the null engine.

The route runs on a uvicorn server on loopback (the GUI mounts the same `LivePages.serve`
on NiceGUI's app); tickets are issued as the page's Start button issues them.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from gui.live.page_socket import ACK_EVERY_PACKETS, PATH, LivePages
from gui.live.relay import LiveRelay
from gui.live.tickets import LiveGrant, Tickets
from tests.farm import Broker, start_broker, start_worker, wait_for
from tests.gui_conftest import gui_settings

PACKET = b"\0\0" * 1000
"""One 1000-frame packet of silence (the null engine decodes all audio anyway)."""
STOP = json.dumps({"type": "stop"})
GRANT = LiveGrant(None)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("farm")
    broker = start_broker(tmp)
    worker = start_worker(tmp, broker.zmq, engine="null")
    broker.wait_workers(1)
    yield broker
    worker.process.stop()
    broker.process.stop()


@contextlib.contextmanager
def serve(
    tmp_path: Path, broker_http: str, resume_seconds: float = 30.0
) -> Iterator[tuple[str, LivePages]]:
    """`LivePages.serve` on a real server on loopback (a thread): (base ws:// URL, pages)."""
    pages = LivePages(LiveRelay(gui_settings(tmp_path, broker_http)), resume_seconds)
    api = FastAPI()
    api.websocket(PATH)(pages.serve)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(api, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "the socket server to start")
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}", pages
    finally:
        server.should_exit = True
        thread.join(30)


def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=30))
    return message


def until(ws: ClientConnection, *kinds: str) -> list[dict[str, Any]]:
    """Messages until one of each type in `kinds` came (in any order)."""
    seen = [receive(ws)]
    while not set(kinds) <= {m["type"] for m in seen}:
        seen.append(receive(ws))
    return seen


def closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        receive(ws)
    return closed.value.rcvd.code if closed.value.rcvd else None


def test_a_page_streams_packets_and_stop_brings_the_final_and_a_done_job(
    tmp_path: Path, broker: Broker
) -> None:
    with serve(tmp_path, broker.http) as (url, pages), connect(ticket_url(url, pages, "en")) as ws:
        ready = receive(ws)
        assert ready["type"] == "ready" and ready["frames"] == 0 and ready["resume"]
        for _ in range(ACK_EVERY_PACKETS):
            ws.send(PACKET)
        seen = until(ws, "ack")
        assert seen[-1]["frames"] == ACK_EVERY_PACKETS * 1000
        ws.send(STOP)
        seen += until(ws, "final")
        assert closed_with(ws) == 1000
        [accepted] = [m for m in seen if m["type"] == "accepted"]
        assert seen[-1]["job_id"] == accepted["job_id"]
        job = broker.wait_job(accepted["job_id"], {"done"})
        assert job["name"].startswith("mic-") and job["language"] in (None, "en")
        wait_for(lambda: pages.active == 0, 30, "the finished session to be forgotten")


def test_a_dropped_page_resumes_and_resends_from_the_frame_the_gui_holds(
    tmp_path: Path, broker: Broker
) -> None:
    with serve(tmp_path, broker.http) as (url, pages):
        with connect(ticket_url(url, pages, None)) as ws:
            key = receive(ws)["resume"]
            for _ in range(ACK_EVERY_PACKETS + 3):
                ws.send(PACKET)
            [job_id] = [m["job_id"] for m in until(ws, "accepted", "ack") if "job_id" in m]
        # The connection dropped without `stop`: the stream waits for the page.
        with connect(f"{url}{PATH}?resume={key}&seen=-1") as ws:
            ready = receive(ws)
            assert ready == {"type": "ready", "resume": key, "frames": ready["frames"]}
            assert receive(ws) == {"type": "accepted", "job_id": job_id}  # what it lacks
            assert ACK_EVERY_PACKETS * 1000 <= ready["frames"] <= (ACK_EVERY_PACKETS + 3) * 1000
            for _ in range(ready["frames"] // 1000, 20):
                ws.send(PACKET)
            ws.send(STOP)
            seen = until(ws, "final")
    assert seen[-1]["job_id"] == job_id
    job = broker.wait_job(job_id, {"done"})
    assert job["duration"] == pytest.approx(20 * 1000 / 16_000)


def test_a_page_that_never_comes_back_is_stopped_and_its_job_kept(
    tmp_path: Path, broker: Broker
) -> None:
    with serve(tmp_path, broker.http, resume_seconds=0.5) as (url, pages):
        with connect(ticket_url(url, pages, None)) as ws:
            receive(ws)
            for _ in range(ACK_EVERY_PACKETS):
                ws.send(PACKET)
            # accepted, and the GUI holds the packets before the page goes
            [job_id] = [m["job_id"] for m in until(ws, "accepted", "ack") if "job_id" in m]
        broker.wait_job(job_id, {"done"})
        wait_for(lambda: pages.active == 0, 30, "the abandoned session to be forgotten")


@pytest.mark.parametrize(
    ("query", "kind", "code"),
    [
        ("", "unauthorized", 1008),
        ("?ticket=made-up&rate=16000", "unauthorized", 1008),
        ("?resume=made-up", "unauthorized", 1008),
        ("?ticket={ticket}&rate=7999", "bad_request", 1003),
        ("?ticket={ticket}&rate=abc", "bad_request", 1003),
    ],
    ids=["no-ticket", "unknown-ticket", "unknown-resume", "rate-too-low", "rate-not-a-number"],
)
def test_a_socket_without_a_valid_ticket_or_rate_is_refused_and_opens_no_stream(
    tmp_path: Path, query: str, kind: str, code: int
) -> None:
    with serve(tmp_path, "http://127.0.0.1:9") as (url, pages):
        with connect(url + PATH + query.format(ticket=pages.tickets.issue(GRANT))) as ws:
            error = receive(ws)
            assert (error["type"], error["kind"]) == ("error", kind)
            assert closed_with(ws) == code
        assert pages.active == 0


def test_a_ticket_opens_one_socket_only(tmp_path: Path, broker: Broker) -> None:
    with serve(tmp_path, broker.http) as (url, pages):
        once = ticket_url(url, pages, None)
        with connect(once) as ws:
            assert receive(ws)["type"] == "ready"
            ws.send(STOP)
            until(ws, "final")
        with connect(once) as ws:
            assert receive(ws)["kind"] == "unauthorized"


@pytest.mark.parametrize(
    ("message", "detail"),
    [
        (b"\0\0\0", "whole s16le frames"),
        (b"\0\0" * 8001, "whole s16le frames"),
        ("hello", '{"type":"stop"}'),
        ('{"type":"end"}', '{"type":"stop"}'),
    ],
    ids=["odd-bytes", "too-many-frames", "not-json", "unknown-type"],
)
def test_a_bad_message_from_the_page_is_refused_and_the_gui_keeps_serving(
    tmp_path: Path, broker: Broker, message: bytes | str, detail: str
) -> None:
    with serve(tmp_path, broker.http) as (url, pages):
        with connect(ticket_url(url, pages, None)) as ws:
            receive(ws)
            ws.send(message)
            error = until(ws, "error")[-1]
            assert error["kind"] == "bad_request" and detail in error["detail"]
            assert closed_with(ws) == 1003
        with connect(ticket_url(url, pages, None)) as ws:
            assert receive(ws)["type"] == "ready"
            ws.send(STOP)
            assert until(ws, "final")[-1]["type"] == "final"


def test_tickets_expire_and_are_spent_once() -> None:
    now = [0.0]
    tickets = Tickets(lifetime=30, clock=lambda: now[0])
    first, second = tickets.issue(LiveGrant("en")), tickets.issue(LiveGrant(None))
    assert tickets.redeem(first) == LiveGrant("en")
    assert tickets.redeem(first) is None
    now[0] = 30.0
    assert tickets.redeem(second) is None
    assert tickets.redeem("") is None


def ticket_url(url: str, pages: LivePages, language: str | None) -> str:
    """The URL a page opens after Start: a fresh ticket, 16 kHz."""
    return f"{url}{PATH}?ticket={pages.tickets.issue(LiveGrant(language))}&rate=16000"
