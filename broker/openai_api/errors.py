"""OpenAI's error body, and the farm's errors translated into it once, at this edge.

`{"error": {"message", "type", "param", "code"}}` with the HTTP status OpenAI uses for
the same failure, so that OpenAI's clients raise their usual exception classes
(`BadRequestError`, `AuthenticationError`, `NotFoundError`, `RateLimitError`…).
"""

from __future__ import annotations

import math

from starlette.responses import JSONResponse

from whisperfarm.errors import ErrorCode, WhisperfarmError


def error_details(
    message: str,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, str | None]:
    """The `error` object OpenAI's REST bodies, Realtime `error` events and failed
    transcriptions all carry."""
    return {"message": message, "type": type, "param": param, "code": code}


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.type, self.param, self.code = type, param, code
        self.retry_after = retry_after

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": error_details(self.message, self.type, self.code, self.param)}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(math.ceil(self.retry_after))} if self.retry_after else {}
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(self.body(), status_code=self.status, headers=headers)

    @classmethod
    def bad_request(cls, message: str, param: str | None = None) -> OpenAIError:
        return cls(400, message, param=param, code="invalid_value" if param else None)


_ANSWERS: dict[ErrorCode, tuple[int, str, str | None]] = {
    ErrorCode.UNAUTHORIZED: (401, "invalid_request_error", None),
    ErrorCode.OVERLOADED: (429, "rate_limit_error", None),
    ErrorCode.TOO_LARGE: (413, "invalid_request_error", "file"),
    ErrorCode.BAD_MESSAGE: (400, "invalid_request_error", "file"),
    ErrorCode.BAD_PACKET: (400, "invalid_request_error", "file"),
    ErrorCode.UNSUPPORTED_FORMAT: (400, "invalid_request_error", "file"),
    ErrorCode.NO_WORKER: (503, "server_error", None),
    ErrorCode.UNKNOWN_MODEL: (404, "invalid_request_error", "model"),
}
"""HTTP status, OpenAI error type and the request field at fault, by the farm's code;
anything else is a 500 `server_error`."""


def from_farm(
    code: ErrorCode, detail: str, job_id: str | None = None, retry_after: float | None = None
) -> OpenAIError:
    """The OpenAI answer to an error the farm raised or replied (`job_id`: a job exists)."""
    status, kind, param = _ANSWERS.get(code, (500, "server_error", None))
    where = f" (job {job_id})" if job_id and status >= 500 else ""
    name = "model_not_found" if code is ErrorCode.UNKNOWN_MODEL else code.value
    return OpenAIError(
        status, f"{detail}{where}", type=kind, param=param, code=name,
        retry_after=retry_after,
    )  # fmt: skip


def from_exception(exc: WhisperfarmError) -> OpenAIError:
    return from_farm(exc.code, exc.detail, retry_after=getattr(exc, "retry_after", None))
