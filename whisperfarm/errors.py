"""One exception tree for the whole farm, translated once at each edge.

Each error knows the protocol error code it maps to and the WebSocket close code that
goes with it, so the broker's edge turns any of them into the documented `error`
message without a lookup table of its own.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """The `code` field of a protocol `error` message."""

    BAD_MESSAGE = "bad_message"
    BAD_PACKET = "bad_packet"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_LARGE = "too_large"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    UNAUTHORIZED = "unauthorized"
    NO_WORKER = "no_worker"
    NOT_FOUND = "not_found"
    UNKNOWN_MODEL = "unknown_model"
    INTERNAL = "internal"
    INTERRUPTED = "interrupted"


class CloseCode(IntEnum):
    """WebSocket close codes (RFC 6455) the broker uses."""

    NORMAL = 1000
    BAD_DATA = 1003
    POLICY = 1008
    TOO_LARGE = 1009
    INTERNAL = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


class WhisperfarmError(Exception):
    """Base of every error the farm raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL
    close_code: CloseCode = CloseCode.INTERNAL

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ProtocolError(WhisperfarmError):
    """A message that does not follow the protocol (schema, order, unknown type)."""

    code = ErrorCode.BAD_MESSAGE
    close_code = CloseCode.BAD_DATA


class BadPacket(ProtocolError):
    """A binary audio packet of the wrong size or at the wrong time."""

    code = ErrorCode.BAD_PACKET


class UnsupportedFormat(ProtocolError):
    """A sample format, rate or channel count the farm does not take."""

    code = ErrorCode.UNSUPPORTED_FORMAT


class TooLarge(WhisperfarmError):
    """A message or stream past the configured limits."""

    code = ErrorCode.TOO_LARGE
    close_code = CloseCode.TOO_LARGE


class Overloaded(WhisperfarmError):
    """Every admission slot is taken; the client should retry later."""

    code = ErrorCode.OVERLOADED
    close_code = CloseCode.TRY_AGAIN_LATER

    def __init__(self, retry_after: float, detail: str = "Server overloaded, try later") -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Timeout(WhisperfarmError):
    """The peer went quiet for longer than allowed."""

    code = ErrorCode.TIMEOUT
    close_code = CloseCode.NORMAL


class Interrupted(WhisperfarmError):
    """The broker cut an upload for a reason of its own (its storage restarted): the job
    is `interrupted` with its durable frames kept, and the client should `resume` it."""

    code = ErrorCode.INTERRUPTED
    close_code = CloseCode.SERVICE_RESTART


class Unauthorized(WhisperfarmError):
    """A missing or wrong API token."""

    code = ErrorCode.UNAUTHORIZED
    close_code = CloseCode.POLICY


class BadUser(WhisperfarmError):
    """An `X-Whisperfarm-User` header that is empty, too long, has control characters,
    or comes with a token that may not act for someone else."""

    code = ErrorCode.BAD_MESSAGE
    close_code = CloseCode.POLICY


class NotFound(WhisperfarmError):
    """A job id that does not exist (or is not resumable)."""

    code = ErrorCode.NOT_FOUND
    close_code = CloseCode.BAD_DATA


class UnknownModel(WhisperfarmError):
    """No connected worker serves the model the stream asked for."""

    code = ErrorCode.UNKNOWN_MODEL
    close_code = CloseCode.BAD_DATA


class NoWorker(WhisperfarmError):
    """No worker could take the stream before the deadline, or none connected can do
    what it asks (label speakers)."""

    code = ErrorCode.NO_WORKER
    close_code = CloseCode.TRY_AGAIN_LATER


class EngineError(WhisperfarmError):
    """The engine failed on a stream (bad audio, model error)."""

    code = ErrorCode.INTERNAL
    close_code = CloseCode.INTERNAL
