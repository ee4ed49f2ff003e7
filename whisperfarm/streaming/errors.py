"""The CLI's typed outcomes: every way one file can end, and the exit code it maps to.

The farm's own tree (`whisperfarm.errors`) describes what the broker raises and how it
goes on the wire; these describe what a person at the terminal is told. Each carries a
finished one-line message so the edge (`runner`) prints it without formatting logic.
"""

from __future__ import annotations

from enum import IntEnum

from whisperfarm.errors import ErrorCode


class ExitCode(IntEnum):
    """Process exit status; with several files the worst (highest) one wins."""

    OK = 0
    UNREADABLE = 2
    OVERLOADED = 3
    FAILED = 4


class SourceError(Exception):
    """Base of every expected failure of one file."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnreadableInput(SourceError):
    """The file is missing, empty, not media, or has no decodable audio stream."""

    exit_code = ExitCode.UNREADABLE

    def __init__(self, reason: str) -> None:
        super().__init__(f"unreadable input: {reason}")
        self.reason = reason


class FarmOverloaded(SourceError):
    """Every admission slot is taken (error `overloaded` or close 1013)."""

    exit_code = ExitCode.OVERLOADED

    def __init__(self, detail: str, retry_after: float | None) -> None:
        hint = f"retry in {retry_after:g} s" if retry_after is not None else "try again later"
        super().__init__(f"farm overloaded ({detail or 'no detail'}), {hint}")
        self.retry_after = retry_after


class FarmUnreachable(SourceError):
    """No WebSocket could be opened to the farm (refused, unknown host, bad handshake)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the farm at {url}: {reason}")


class FarmFailed(SourceError):
    """The farm answered with an `error` (other than `overloaded`) or closed on purpose."""

    def __init__(self, code: ErrorCode | str, detail: str) -> None:
        super().__init__(f"the farm failed the stream ({code}): {detail}")
        self.code = code


class ConnectionLost(SourceError):
    """The connection kept dropping and reconnecting with `resume` did not help."""


class ProtocolViolation(SourceError):
    """The farm sent something protocol v1 does not allow."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"the farm broke protocol v1: {detail}")


class OutputError(SourceError):
    """The transcript arrived but could not be saved."""


class NoMicrophone(SourceError):
    """`--mic` found nothing to record from: no input device, or none by the name asked for."""

    exit_code = ExitCode.UNREADABLE

    def __init__(self, reason: str) -> None:
        super().__init__(f"no microphone: {reason}")
