"""An uploaded file: read from the request with a size limit, decoded in a child process.

The multipart body is spooled to a temporary file as it arrives (starlette's parser),
so a 2 GiB upload never sits in memory, and its fields may come in any order. The file
is then decoded by `python -m whisperfarm.streaming.pcm_pipe` — off the event loop —
which reads it through its descriptor and streams 1000-frame packets back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import IO

from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from broker.openai_api.errors import OpenAIError
from whisperfarm.packets import AudioFormat

FORM_OVERHEAD_BYTES = 256 * 1024
"""What the form's other fields and multipart headers may add to the file's size."""


async def read_form(request: Request, max_file_bytes: int) -> FormData:
    """The request's multipart form; 413 as soon as the body outgrows the limit."""
    limit = max_file_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(max_file_bytes)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise OpenAIError.bad_request("the request must be multipart/form-data")

    async def limited() -> AsyncGenerator[bytes, None]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise _too_large(max_file_bytes)
            yield chunk

    parser = MultiPartParser(request.headers, limited(), max_files=1, max_fields=64)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise OpenAIError.bad_request(f"malformed form: {exc.message}") from None


def _too_large(max_file_bytes: int) -> OpenAIError:
    mb = max_file_bytes / 1024 / 1024
    return OpenAIError(413, f"the file is larger than {mb:g} MB", param="file",
                       code="file_too_large")  # fmt: skip


@dataclass
class DecodedAudio:
    """A file's native audio format, what the container says of its length, and its
    packets as the child decodes them."""

    audio: AudioFormat
    duration: float | None
    packets: AsyncIterator[bytes]


@contextlib.asynccontextmanager
async def decoded(file: IO[bytes]) -> AsyncIterator[DecodedAudio]:
    """Decode `file` in a child process; raises `OpenAIError` 400 for a file that is
    not audio (before any packet). The child is killed when the block exits."""
    if hasattr(file, "rollover"):
        file.rollover()  # a small upload still in memory: give it a descriptor
    fd = file.fileno()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "whisperfarm.streaming.pcm_pipe", f"/proc/self/fd/{fd}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, pass_fds=(fd,),
    )  # fmt: skip
    assert child.stdout is not None
    try:
        header = json.loads(await child.stdout.readline() or b"{}")
        if "sample_rate" not in header:
            reason = header.get("error") or "the file could not be decoded"
            raise OpenAIError.bad_request(reason, param="file")
        audio = AudioFormat(int(header["sample_rate"]), int(header["channels"]), "s16le")
        yield DecodedAudio(audio, header.get("duration"), _packets(child, audio))
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
        await child.wait()


async def _packets(child: asyncio.subprocess.Process, audio: AudioFormat) -> AsyncIterator[bytes]:
    """The child's packets; raises `OpenAIError` 400 if it fails mid-file."""
    assert child.stdout is not None and child.stderr is not None
    while True:
        try:
            yield await child.stdout.readexactly(audio.packet_bytes)
        except asyncio.IncompleteReadError as end:
            if end.partial:
                yield end.partial
            break
    if await child.wait() != 0:
        reason = (await child.stderr.read()).decode(errors="replace").strip()
        raise OpenAIError.bad_request(reason or "the file could not be decoded", param="file")
