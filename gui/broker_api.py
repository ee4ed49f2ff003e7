"""The broker's REST side as the GUI uses it: jobs, farm, transcripts and `/v1/events`.

Every failure to talk to the broker becomes one `BrokerUnavailable` carrying a short human
reason ("connection refused", "HTTP 503"), so callers show it as is and never a traceback.
A 404/409 on a transcript is not the broker being down: it is `TranscriptUnavailable`.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from whisperfarm.farm_view import FarmView
from whisperfarm.jobs import Job
from whisperfarm.tokens import person_headers
from whisperfarm.transcripts import FORMATS

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

EVENTS_READ_TIMEOUT = 45.0
"""The broker sends a keep-alive every 15 s; three missed ones mean the stream is dead."""
EVENTS: dict[str, type[FarmView] | type[Job]] = {"farm": FarmView, "job": Job}
"""The `/v1/events` kinds and the models their data are."""
JOB_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
"""What a job id may look like before it goes into a broker URL (ids are uuid4 hex)."""


class BrokerUnavailable(Exception):
    """The broker could not be reached or answered with a server error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TranscriptUnavailable(Exception):
    """The job exists but has no transcript (yet), or is unknown: a 4xx with a detail."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def describe(exc: Exception) -> str:
    """A few words on why an HTTP call failed."""
    if isinstance(exc, httpx.ConnectError):
        return _connect_reason(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection was cut"
    return str(exc) or type(exc).__name__


def _connect_reason(exc: BaseException) -> str:
    """httpx says "All connection attempts failed"; the cause underneath says why."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "refused" in str(seen).lower():
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return f"unknown host ({seen.strerror})"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror[:1].lower() + seen.strerror[1:]
        seen = seen.__cause__ or seen.__context__
    return str(exc) or "cannot connect"


class BrokerApi:
    """A small async client; one per GUI process, shared by every page and loop."""

    def __init__(
        self, base_url: str, connect_timeout: float = 10.0, token: str | None = None
    ) -> None:
        self.base_url = base_url
        self._timeout = httpx.Timeout(connect_timeout, connect=connect_timeout)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(base_url=base_url, timeout=self._timeout, headers=headers)

    async def close(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, person: str | None = None, **params: Any) -> httpx.Response:
        """GET `path` as `person` (None: the GUI's own view, every job its token sees)."""
        try:
            response = await self._client.get(
                path, params=params or None, headers=person_headers(person)
            )
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(describe(exc)) from None
        if response.status_code >= 500:
            raise BrokerUnavailable(f"HTTP {response.status_code}")
        return response

    async def _json(self, path: str, person: str | None = None, **params: Any) -> dict[str, Any]:
        response = await self._get(path, person, **params)
        try:
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPStatusError, ValueError) as exc:
            raise BrokerUnavailable(f"unexpected answer from {path}: {describe(exc)}") from None
        if not isinstance(data, dict):
            raise BrokerUnavailable(f"unexpected answer from {path}")
        return data

    async def jobs(self, limit: int = 200) -> list[Job]:
        jobs = (await self._json("/v1/jobs", limit=limit)).get("jobs", [])
        listed = [_model(Job, j) for j in jobs] if isinstance(jobs, list) else []
        return [j for j in listed if j is not None]

    async def job(self, job_id: str, person: str | None = None) -> Job | None:
        """The job, if `person` may see it (None: unknown, or another person's)."""
        if not JOB_ID.match(job_id):
            return None
        response = await self._get(f"/v1/jobs/{job_id}", person)
        if response.status_code == 404:
            return None
        return _expect(Job, await self._json(f"/v1/jobs/{job_id}", person), f"/v1/jobs/{job_id}")

    async def farm(self) -> FarmView:
        return _expect(FarmView, await self._json("/v1/farm"), "/v1/farm")

    async def transcript(self, job_id: str, fmt: str = "json", person: str | None = None) -> bytes:
        """One transcript file as the broker stores it; raises `TranscriptUnavailable` on 4xx."""
        if fmt not in FORMATS:
            raise TranscriptUnavailable(f"format must be one of {', '.join(FORMATS)}")
        if not JOB_ID.match(job_id):
            raise TranscriptUnavailable("no such job")
        response = await self._get(f"/v1/jobs/{job_id}/transcript", person, format=fmt)
        if response.status_code >= 400:
            raise TranscriptUnavailable(_detail(response))
        return response.content

    async def events(self) -> AsyncIterator[FarmView | Job]:
        """Yield the farm and job changes of `/v1/events` until the broker ends the stream.

        Raises `BrokerUnavailable` if it cannot be opened or breaks; a clean end (the broker
        shutting down, or dropping a slow subscriber) just ends the iteration. An event of
        another kind, or one that does not fit its model, is skipped.
        """
        timeout = httpx.Timeout(self._timeout.connect, read=EVENTS_READ_TIMEOUT)
        try:
            async with self._client.stream("GET", "/v1/events", timeout=timeout) as response:
                if response.status_code != 200:
                    raise BrokerUnavailable(f"HTTP {response.status_code} from /v1/events")
                async for event, data in parse_sse(response.aiter_lines()):
                    model = EVENTS.get(event)
                    change = _model(model, data) if model is not None else None
                    if change is not None:
                        yield change
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(describe(exc)) from None


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Server-sent events with JSON object data; comments (keep-alives) and junk are skipped."""
    event, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                parsed = _load("\n".join(data))
                if parsed is not None:
                    yield event, parsed
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def _model(model: type[M], data: Any) -> M | None:
    """`data` as `model`, or None (logged): one bad record must not hide the others."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        log.info("ignoring a %s the GUI cannot read: %s", model.__name__, exc.errors()[0]["msg"])
        return None


def _expect(model: type[M], data: Any, path: str) -> M:
    found = _model(model, data)
    if found is None:
        raise BrokerUnavailable(f"unexpected answer from {path}")
    return found


def _load(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        log.info("ignoring an event that is not JSON: %.80s", text)
        return None
    return value if isinstance(value, dict) else None


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else f"HTTP {response.status_code}"
