"""Jobs' transcripts on disk, written behind the final that carries them.

A job's final goes to its client as soon as the worker's result is in hand; the
transcript's file (`transcript.json`, temp file + fsync + rename + directory fsync) is
written by the disk agent right behind it. Waiting for that fsync before the final would
be most of the time from `end` to `final` at a thousand streams: the fsync waits for the
file system's journal behind every spool's writes, and the request and its answer each
wait for a CPU on their way through the agent's pipe (`bench/RESULTS.md`, 2026-11-26,
`0c67404`→`fc0eb4d`).

Nothing is lost by not waiting:
- the request is in the agent's pipe before the final goes out, and an agent finishes
  what its pipe holds even when the broker dies; an agent that dies first is replaced,
  and the new one is asked once more (`DiskAgentGone`);
- until the file is durable the transcript is served from memory (`get`), so a client
  that fetches it right after its final, or resumes for it, finds it;
- the farm deletes the job's spool only once the file is durable, so after a power cut
  that took an unwritten transcript, the job is transcribed again from its spool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from pathlib import Path

from broker.disk import Disk, DiskAgentGone
from broker.spool import JobFiles
from whisperfarm.transcripts import Transcript

log = logging.getLogger(__name__)

Stored = Callable[[OSError | None], None]
"""Called once a transcript is durable (None) or could not be stored (the error)."""


class TranscriptStore:
    def __init__(self, disk: Disk, data_dir: Path) -> None:
        self._disk = disk
        self._data_dir = data_dir
        self._unwritten: dict[str, Transcript] = {}

    def store(self, transcript: Transcript, data: bytes, stored: Stored) -> None:
        """Hand `data` (the transcript as stored) to the disk agent; `stored` is called
        on the loop when it is durable or has failed. The request is in the agent's pipe
        when this returns (unless no agent runs: then it goes to the one being started,
        and a broker that dies before that leaves the job to be transcribed again)."""
        self._unwritten[transcript.job_id] = transcript
        self._commit(transcript, data, stored, retried=False)

    def _commit(self, transcript: Transcript, data: bytes, stored: Stored, retried: bool) -> None:
        path = JobFiles(self._data_dir, transcript.job_id).transcript_path
        self._disk.commit(path, data).add_done_callback(
            functools.partial(self._committed, transcript, data, stored, retried)
        )

    def _committed(
        self, transcript: Transcript, data: bytes, stored: Stored, retried: bool,
        done: asyncio.Future[bytes],
    ) -> None:  # fmt: skip
        if done.cancelled():
            return  # the broker is stopping: its agent still writes what it was handed
        error = done.exception()
        if isinstance(error, DiskAgentGone) and not retried:
            log.warning(
                "job %s: %s; storing its transcript again", transcript.job_id, error.strerror
            )
            self._commit(transcript, data, stored, retried=True)
            return
        self._unwritten.pop(transcript.job_id, None)
        if error is not None and not isinstance(error, OSError):
            raise error  # a bug: the loop's exception handler logs it
        stored(error)

    def pending(self, job_id: str) -> bool:
        """Whether the job's transcript is on its way to the disk."""
        return job_id in self._unwritten

    async def load(self, job_id: str) -> Transcript | None:
        """The job's transcript: from memory while it is being written, else from its
        file, read by the disk agent (None if there is none; ValueError if the file is
        not a transcript)."""
        unwritten = self._unwritten.get(job_id)
        if unwritten is not None:
            return unwritten
        data = await self._disk.read_file(JobFiles(self._data_dir, job_id).transcript_path)
        return None if data is None else Transcript.model_validate_json(data)
