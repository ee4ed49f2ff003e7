"""REST edge: jobs, transcripts, farm view, server-sent events, health and metrics."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from broker.auth import Identity
from broker.farm import Farm
from whisperfarm.errors import BadUser, Unauthorized
from whisperfarm.jobs import Job, JobStatus
from whisperfarm.transcripts import FORMATS, MEDIA_TYPES, render

MAX_LIST = 1000


def _farm(request: Request) -> Farm:
    farm: Farm = request.app.state.farm
    return farm


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _identity(request: Request) -> Identity:
    return _farm(request).identity(request.headers, request.query_params)


def _public(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json", exclude={"owner"})


async def list_jobs(request: Request) -> Response:
    try:
        limit = min(int(request.query_params.get("limit", "200")), MAX_LIST)
        statuses = [JobStatus(s) for s in request.query_params.getlist("status")] or None
    except ValueError as exc:
        return _problem(400, f"bad query: {exc}")
    farm = _farm(request)
    jobs = farm.jobs(limit=limit, statuses=statuses, who=_identity(request))
    return JSONResponse({"jobs": [_public(j) for j in jobs]})


async def get_job(request: Request) -> Response:
    job = _farm(request).job(request.path_params["job_id"], _identity(request))
    if job is None:
        return _problem(404, "no such job")
    return JSONResponse(_public(job))


async def get_transcript(request: Request) -> Response:
    farm = _farm(request)
    job_id = request.path_params["job_id"]
    fmt = request.query_params.get("format", "txt")
    if fmt not in FORMATS:
        return _problem(400, f"format must be one of {', '.join(FORMATS)}")
    job = farm.job(job_id, _identity(request))
    if job is None:
        return _problem(404, "no such job")
    if job.status is not JobStatus.DONE:
        return _problem(409, f"job is {job.status.value}, no transcript yet")
    transcript = await farm.transcript(job)
    if transcript is None:
        return _problem(404, "transcript file missing")
    return Response(
        render(transcript, fmt),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": _attachment(job.name, fmt)},
    )


def _attachment(name: str, fmt: str) -> str:
    """A download name from the client's file name: no paths, header-safe, UTF-8 kept.

    The plain `filename` is ASCII for old clients; `filename*` (RFC 6266/5987) carries
    the real, percent-encoded name.
    """
    stem = PurePosixPath(name.replace("\\", "/")).name.rsplit(".", 1)[0][:100]
    plain = "".join(c if c.isascii() and (c.isalnum() or c in "-_ ") else "_" for c in stem)
    utf8 = quote(f"{stem or 'transcript'}.{fmt}", safe="")
    return (
        f"attachment; filename=\"{plain.strip() or 'transcript'}.{fmt}\"; filename*=UTF-8''{utf8}"
    )


async def farm_view(request: Request) -> Response:
    _identity(request)
    return JSONResponse(_farm(request).view().model_dump(mode="json"))


async def events(request: Request) -> Response:
    farm = _farm(request)
    return StreamingResponse(
        farm.events(_identity(request)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    checks = _farm(request).readiness()
    return JSONResponse(checks, status_code=200 if checks["ready"] else 503)


async def metrics_view(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _unauthorized(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Unauthorized)
    return JSONResponse(
        {"detail": exc.detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


async def _bad_user(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadUser)
    return _problem(400, exc.detail)


exception_handlers = {Unauthorized: _unauthorized, BadUser: _bad_user}

routes = [
    Route("/v1/jobs", list_jobs),
    Route("/v1/jobs/{job_id}", get_job),
    Route("/v1/jobs/{job_id}/transcript", get_transcript),
    Route("/v1/farm", farm_view),
    Route("/v1/events", events),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics_view),
]
