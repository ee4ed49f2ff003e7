"""`POST /v1/audio/transcriptions` and `/v1/audio/translations`: a file in, a job of the farm.

Each request is a job like any stream's: admitted, spooled, dispatched and recorded
through `Farm.open`; its file is decoded in a child process (`upload_file`) and fed to
the upload in 1000-frame packets as they are decoded. A request refused before its
audio is accepted (bad form, undecodable or empty file, unknown model, farm full)
leaves no job; one that fails after is a `failed` job, and its answer names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from broker.farm import Farm
from broker.openai_api.errors import OpenAIError, from_exception, from_farm
from broker.openai_api.options import Task, TranscriptionOptions, parse_options
from broker.openai_api.responses import respond, sse
from broker.openai_api.upload_file import DecodedAudio, decoded, read_form
from broker.upload import ReadGate, Upload
from whisperfarm.errors import ProtocolError, WhisperfarmError
from whisperfarm.protocol import Error, Final, Segment, Start
from whisperfarm.transcripts import Transcript

log = logging.getLogger(__name__)


async def transcriptions(request: Request) -> Response:
    return await _transcribe(request, "transcribe")


async def translations(request: Request) -> Response:
    return await _transcribe(request, "translate")


async def _transcribe(request: Request, task: Task) -> Response:
    farm: Farm = request.app.state.farm
    exits = contextlib.AsyncExitStack()
    try:
        who = farm.identity(request.headers, request.query_params)
        form = await read_form(request, int(farm.settings.max_upload_mb * 1024 * 1024))
        exits.push_async_callback(form.close)
        file, options = parse_options(form)
        diarize = options.response_format == "diarized_json"
        if diarize and task == "translate":
            raise OpenAIError.bad_request(
                "diarized_json is for transcriptions, not translations", "response_format"
            )
        farm.resolve_model(options.model)
        audio = await exits.enter_async_context(decoded(file.file))
        first = await anext(audio.packets, None)
        if first is None:
            raise OpenAIError.bad_request("the file holds no audio", "file")
        start = Start(
            name=file.filename or "upload", sample_rate=audio.audio.sample_rate,
            channels=audio.audio.channels, language=options.language, task=task,
            duration=audio.duration, model=options.model, prompt=options.prompt,
            temperature=options.temperature,
            word_timestamps="word" in options.timestamp_granularities, diarize=diarize,
        )  # fmt: skip
        upload = await farm.open(start, who)
    except OpenAIError as exc:
        await exits.aclose()
        return exc.response()
    except WhisperfarmError as exc:
        await exits.aclose()
        return from_exception(exc).response()
    job = _Job(upload, audio, first, task, options)
    if options.stream:
        return StreamingResponse(
            _closing(job.events(), exits), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )  # fmt: skip
    async with exits:
        return await job.answer()


async def _closing(
    events: AsyncIterator[bytes], exits: contextlib.AsyncExitStack
) -> AsyncIterator[bytes]:
    """The events, then the form and the decoder closed (the response owns them now)."""
    async with exits:
        async for event in events:
            yield event


class _Job:
    """One request's upload: fed by a task from the decoder, answered from its replies."""

    def __init__(
        self, upload: Upload, audio: DecodedAudio, first: bytes, task: Task,
        options: TranscriptionOptions,
    ) -> None:  # fmt: skip
        self._upload, self._audio, self._first = upload, audio, first
        self._task, self._options = task, options
        self._feeder = asyncio.create_task(self._feed())

    async def _feed(self) -> None:
        """Every packet into the upload (waiting while the disk is behind), then `end`."""
        gate = ReadGate()
        self._upload.read_with(gate)
        try:
            self._upload.feed(self._first)
            async for packet in self._audio.packets:
                await gate.open.wait()
                self._upload.feed(packet)
            self._upload.end()
            await self._upload.settled()
        except OpenAIError as exc:  # the file broke off: the job fails with the reason
            self._upload.abort(ProtocolError(exc.message))
        except WhisperfarmError as exc:
            self._upload.abort(exc)

    async def _results(self) -> AsyncIterator[Segment | Final | Error]:
        while True:
            message, _ = await self._upload.replies.get()
            if isinstance(message, Segment | Final | Error):
                yield message
            if isinstance(message, Final | Error):
                return

    async def answer(self) -> Response:
        try:
            async for message in self._results():
                if isinstance(message, Final):
                    transcript = Transcript(
                        job_id=message.job_id, text=message.text, segments=message.segments,
                        language=message.language, duration=message.duration,
                    )  # fmt: skip
                    return respond(
                        transcript,
                        self._options.response_format,
                        self._task,
                        self._options.timestamp_granularities,
                    )
                if isinstance(message, Error):
                    return self._error(message).response()
            raise AssertionError("replies end with a final or an error")
        finally:
            await self._stop()

    async def events(self) -> AsyncIterator[bytes]:
        """`transcript.text.delta` per committed segment, then one `.done` (or `error`)."""
        said = False
        try:
            async for message in self._results():
                if isinstance(message, Segment) and message.text.strip():
                    # deltas add up to the final text: segments joined by one space
                    delta = (" " if said else "") + message.text.strip()
                    said = True
                    yield sse({"type": "transcript.text.delta", "delta": delta})
                elif isinstance(message, Final):
                    yield sse({"type": "transcript.text.done", "text": message.text})
                elif isinstance(message, Error):
                    yield sse({"type": "error", **self._error(message).body()})
        finally:
            await self._stop()

    def _error(self, error: Error) -> OpenAIError:
        return from_farm(error.code, error.detail, self._upload.job_id, error.retry_after)

    async def _stop(self) -> None:
        """The client has its answer, or left: a feeder still at work stops, and its
        upload is interrupted (nobody resumes it: the sweep fails it in time)."""
        self._upload.detach()
        if self._feeder.done():
            return
        self._feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._feeder
        closing = self._upload.disconnected()
        if closing is not None:
            await closing
