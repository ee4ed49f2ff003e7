"""`/live/ws`, the page's microphone socket, against a real broker with the null engine.

The route is served by Starlette's test client (the GUI mounts the same `LivePages.serve`
on NiceGUI's app); tickets are issued as the page's Start button issues them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from gui.live.page_socket import ACK_EVERY_PACKETS, PATH, LivePages
from gui.live.relay import LiveRelay
from gui.live.tickets import LiveGrant, Tickets
from tests.farm import Broker, start_broker, start_worker, wait_for
from tests.gui_conftest import gui_settings

PACKET = b"\0\0" * 1000
"""One 1000-frame packet of silence (the null engine decodes all audio anyway)."""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("farm")
    broker = start_broker(tmp)
    worker = start_worker(tmp, broker.zmq, engine="null")
    broker.wait_workers(1)
    yield broker
    worker.process.stop()
    broker.process.stop()


def serve(tmp_path: Path, broker_http: str, resume_seconds: float = 30.0) -> tuple[
    TestClient, LivePages
]:  # fmt: skip
    pages = LivePages(LiveRelay(gui_settings(tmp_path, broker_http)), resume_seconds)
    api = FastAPI()
    api.websocket(PATH)(pages.serve)
    return TestClient(api), pages


def until(ws: Any, kind: str) -> list[dict[str, Any]]:
    """Messages up to and including the first of type `kind`."""
    seen = [ws.receive_json()]
    while seen[-1]["type"] != kind:
        seen.append(ws.receive_json())
    return seen


def closed_with(ws: Any) -> int:
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    return closed.value.code


def test_a_page_streams_packets_and_stop_brings_the_final_and_a_done_job(
    tmp_path: Path, broker: Broker
) -> None:
    client, pages = serve(tmp_path, broker.http)
    with client, client.websocket_connect(_ticket_url(pages, "en")) as ws:
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["frames"] == 0 and ready["resume"]
        for _ in range(ACK_EVERY_PACKETS):
            ws.send_bytes(PACKET)
        seen = until(ws, "ack")
        assert seen[-1]["frames"] == ACK_EVERY_PACKETS * 1000
        ws.send_json({"type": "stop"})
        seen += until(ws, "final")
        assert closed_with(ws) == 1000
    [accepted] = [m for m in seen if m["type"] == "accepted"]
    assert seen[-1]["job_id"] == accepted["job_id"]
    job = broker.wait_job(accepted["job_id"], {"done"})
    assert job["name"] == "microphone" and job["language"] in (None, "en")
    wait_for(lambda: pages.active == 0, 30, "the finished session to be forgotten")


def test_a_dropped_page_resumes_and_resends_from_the_frame_the_gui_holds(
    tmp_path: Path, broker: Broker
) -> None:
    client, pages = serve(tmp_path, broker.http)
    with client:
        with client.websocket_connect(_ticket_url(pages, None)) as ws:
            key = ws.receive_json()["resume"]
            for _ in range(ACK_EVERY_PACKETS + 3):
                ws.send_bytes(PACKET)
            until(ws, "ack")
        # The connection dropped without `stop`: the stream waits for the page.
        with client.websocket_connect(f"{PATH}?resume={key}") as ws:
            ready = ws.receive_json()
            assert ready == {"type": "ready", "resume": key, "frames": ready["frames"]}
            assert ACK_EVERY_PACKETS * 1000 <= ready["frames"] <= (ACK_EVERY_PACKETS + 3) * 1000
            for _ in range(ready["frames"] // 1000, 20):
                ws.send_bytes(PACKET)
            ws.send_json({"type": "stop"})
            seen = until(ws, "final")
    [job_id] = {m["job_id"] for m in seen if m["type"] == "final"}
    job = broker.wait_job(job_id, {"done"})
    assert job["duration"] == pytest.approx(20 * 1000 / 16_000)


def test_a_page_that_never_comes_back_is_stopped_and_its_job_kept(
    tmp_path: Path, broker: Broker
) -> None:
    client, pages = serve(tmp_path, broker.http, resume_seconds=0.5)
    with client:
        with client.websocket_connect(_ticket_url(pages, None)) as ws:
            ws.receive_json()
            for _ in range(ACK_EVERY_PACKETS):
                ws.send_bytes(PACKET)
            job_id = next(m for m in until(ws, "ack") if m["type"] == "accepted")["job_id"]
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
    client, pages = serve(tmp_path, "http://127.0.0.1:9")
    with client, client.websocket_connect(PATH + query.format(ticket=_ticket(pages))) as ws:
        error = ws.receive_json()
        assert (error["type"], error["kind"]) == ("error", kind)
        assert closed_with(ws) == code
    assert pages.active == 0


def test_a_ticket_opens_one_socket_only(tmp_path: Path, broker: Broker) -> None:
    client, pages = serve(tmp_path, broker.http)
    url = _ticket_url(pages, None)
    with client:
        with client.websocket_connect(url) as ws:
            assert ws.receive_json()["type"] == "ready"
            ws.send_json({"type": "stop"})
            until(ws, "final")
        with client.websocket_connect(url) as ws:
            assert ws.receive_json()["kind"] == "unauthorized"


@pytest.mark.parametrize(
    ("send", "detail"),
    [
        (lambda ws: ws.send_bytes(b"\0\0\0"), "whole s16le frames"),
        (lambda ws: ws.send_bytes(b"\0\0" * 8001), "whole s16le frames"),
        (lambda ws: ws.send_text("hello"), '{"type":"stop"}'),
        (lambda ws: ws.send_json({"type": "end"}), '{"type":"stop"}'),
    ],
    ids=["odd-bytes", "too-many-frames", "not-json", "unknown-type"],
)
def test_a_bad_message_from_the_page_is_refused_and_the_gui_keeps_serving(
    tmp_path: Path, broker: Broker, send: Any, detail: str
) -> None:
    client, pages = serve(tmp_path, broker.http)
    with client:
        with client.websocket_connect(_ticket_url(pages, None)) as ws:
            ws.receive_json()
            send(ws)
            error = until(ws, "error")[-1]
            assert error["kind"] == "bad_request" and detail in error["detail"]
            assert closed_with(ws) == 1003
        with client.websocket_connect(_ticket_url(pages, None)) as ws:
            assert ws.receive_json()["type"] == "ready"
            ws.send_json({"type": "stop"})
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


def _ticket(pages: LivePages, language: str | None = None) -> str:
    return pages.tickets.issue(LiveGrant(language))


def _ticket_url(pages: LivePages, language: str | None) -> str:
    return f"{PATH}?ticket={_ticket(pages, language)}&rate=16000"
