"""`Farm`: the broker's parts put together, and the one API its edges call.

An edge — the WebSocket `/v1/stream`, REST, server-sent events, and any edge to come —
calls only the public methods below: `open` or `resume` an upload (`broker.upload`),
look up jobs, transcripts and the farm's state, and follow its events. Behind them:

    edge ─ Upload ─▶ Intake (check, spool, forward, ack, end) ─▶ Dispatcher ─▶ workers
                       │                                            │
                       └──────── JobLifecycle (statuses) ◀── WorkerResults
                                     ▲
                                 Recovery (restart, sweeps)

`docs/architecture.md` walks through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from broker import metrics
from broker.admission import Admission, Reservation
from broker.auth import ANYONE, Authenticator, Identity, load_tokens
from broker.disk import Disk
from broker.dispatcher import Dispatcher
from broker.events import EventHub
from broker.jobstore import JobStore, SqliteJobStore
from broker.lifecycle import JobLifecycle
from broker.loop_lag import watch_event_loop
from broker.recovery import Recovery
from broker.results import WorkerResults
from broker.run import StreamRun
from broker.settings import BrokerSettings
from broker.spool import JobFiles, SpoolWriter
from broker.transcript_store import TranscriptStore
from broker.upload import Upload
from whisperfarm.curve import CurveServer
from whisperfarm.errors import NotFound, NoWorker, UnknownModel, WhisperfarmError
from whisperfarm.farm_view import FarmView
from whisperfarm.jobs import DECODE_OPTIONS, Job, JobStatus
from whisperfarm.packets import PacketValidator
from whisperfarm.protocol import Start
from whisperfarm.transcripts import Transcript

log = logging.getLogger(__name__)

OPENAI_MODEL_ALIASES = frozenset(
    {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize"}
)
"""The model names OpenAI's clients send: each stands for the farm's default model."""


class Farm:
    def __init__(self, settings: BrokerSettings, store: JobStore | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._store: JobStore = store or SqliteJobStore(settings.data_dir / "jobs.sqlite3")
        self._events = EventHub()
        self._admission = Admission(
            settings.max_active, settings.retry_after, settings.max_streams_per_token
        )
        self._auth = Authenticator(load_tokens(settings.api_tokens, settings.api_tokens_file))
        self._disk = Disk(settings.data_dir, int(settings.max_disk_backlog_mb * 1024 * 1024))
        metrics.DISK_BACKLOG.set_function(lambda: self._disk.backlog)
        self._transcripts = TranscriptStore(self._disk, settings.data_dir)
        curve = (
            CurveServer.load(settings.curve_secret_key, settings.curve_clients_dir)
            if settings.curve_secret_key is not None
            else None
        )
        self._dispatcher = Dispatcher(
            settings.zmq, self._disk, settings.heartbeat_interval, settings.heartbeat_liveness,
            curve,
        )  # fmt: skip
        self._lifecycle = JobLifecycle(
            settings, self._store, self._events, self._admission, self._disk,
            self._transcripts, self._dispatcher,
        )  # fmt: skip
        self._dispatcher.listen(WorkerResults(self._lifecycle, self._transcripts))
        self._recovery = Recovery(settings, self._store, self._lifecycle, self._dispatcher)
        self._resuming: set[str] = set()
        """Jobs whose resume is opening their spool (not among the runs yet)."""
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- life of the broker -------------------------------------------------------------

    async def start(self) -> None:
        await self._disk.start()
        self._recovery.recover()
        self._spawn(self._dispatcher.serve())
        self._spawn(self._recovery.sweep_loop())
        self._spawn(self._lifecycle.pass_on_quiet())
        self._spawn(watch_event_loop())

    async def stop(self) -> None:
        """Stop in order: no new work, close clients' streams, then sockets and store."""
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for run in list(self._lifecycle.runs.values()):
            if run.spool is not None:
                run.spool.close()
            self._store.save(run.job)
        self._events.close()
        self._dispatcher.close()
        await self._disk.close()  # the spools' last writes and closes
        self._store.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def zmq_endpoint(self) -> str:
        """Where workers connect (the bound address: a `*` port resolved)."""
        return self._dispatcher.endpoint

    def disk_agent_pid(self) -> int | None:
        return self._disk.agent_pid

    # ---- uploads ------------------------------------------------------------------------

    def identity(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Identity:
        """Who the caller is and which jobs it sees; raises `Unauthorized` or `BadUser`."""
        return self._auth.identity(headers, query)

    def reserve(self, who: Identity = ANYONE) -> Reservation:
        """Admit a stream to be opened later (or raise `Overloaded`): `open` it with the
        reservation, or release it."""
        self._admission.acquire("start", who.owner)
        return Reservation(self._admission, who.owner)

    async def open(
        self, start: Start, who: Identity = ANYONE, reservation: Reservation | None = None
    ) -> Upload:
        """Admit a new stream (or raise `Overloaded`; none with a `reservation`) and
        queue it for a worker."""
        owner = who.owner
        audio = start.audio_format()
        model = self.resolve_model(start.model)
        if start.diarize and (why := self._dispatcher.why_no_speakers(model)) is not None:
            raise NoWorker(f"no worker serving {model} can label speakers: {why}")
        if reservation is None:
            self._admission.acquire("start", owner)
        else:
            reservation.take_over()
        now = time.time()
        job = Job(
            id=uuid.uuid4().hex,
            name=start.name,
            created_at=now,
            updated_at=now,
            sample_rate=audio.sample_rate,
            channels=audio.channels,
            format=audio.format,
            language=start.language,
            task=start.task,
            model=model,
            duration_hint=start.duration,
            owner=owner,
            person=who.person,
            **start.model_dump(include=DECODE_OPTIONS),
        )
        files = JobFiles(self.settings.data_dir, job.id)
        spool = await self._open_spool(files, 0, owner)
        run = StreamRun(job, files, audio, PacketValidator(audio), spool, admitted=True)
        self._lifecycle.admit(run)
        return self._upload(run)

    async def resume(self, job_id: str, who: Identity = ANYONE) -> Upload:
        """Re-attach a client to its job after a dropped connection.

        An interrupted upload is re-admitted from its last whole packet in the spool; an
        upload that had ended (the job goes on, or is done) is re-attached so the client
        gets its final after sending `end` again.
        """
        # The cut upload's last packets may still be queued for the disk: the size is
        # asked of the agent behind them, so it is the final one.
        spooled = await self._disk.size(JobFiles(self.settings.data_dir, job_id).spool_path)
        job = self.job(job_id, who)
        run = self._lifecycle.runs.get(job_id) if job is not None else None
        if run is not None and run.ended and run.outbox is None:
            run.outbox = asyncio.Queue()
            return self._upload(run)
        if job is not None and job.status is JobStatus.DONE:
            return self._upload(self._finished_run(job))
        if (
            job is None
            or job.status is not JobStatus.INTERRUPTED
            or run is not None
            or job_id in self._resuming  # another connection is opening its spool
        ):
            state = "unknown" if job is None else job.status.value
            raise NotFound(f"job {job_id} cannot be resumed (it is {state})")
        return self._upload(await self._readmit(job, job.owner, spooled or 0))

    async def _readmit(self, job: Job, owner: str | None, spooled: int) -> StreamRun:
        """An interrupted job admitted again, its spool cut to its last whole packet."""
        audio = job.audio_format()
        files = JobFiles(self.settings.data_dir, job.id)
        whole = spooled // audio.packet_bytes * audio.packet_bytes
        self._admission.acquire("resume", owner)
        validator = PacketValidator(audio, audio.frames_in(whole))
        self._resuming.add(job.id)
        try:
            spool = await self._open_spool(files, whole, owner)
        finally:
            self._resuming.discard(job.id)
        run = StreamRun(job, files, audio, validator, spool, admitted=True)
        job.frames = validator.frames
        job.error = None
        self._lifecycle.admit(run)
        return run

    async def _open_spool(self, files: JobFiles, keep_bytes: int, owner: str | None) -> SpoolWriter:
        """Open a just-admitted stream's spool; on a disk error, give the slot back."""
        try:
            return await self._lifecycle.intake.open_spool(files, keep_bytes)
        except WhisperfarmError:
            self._admission.release(owner)
            raise

    def _finished_run(self, job: Job) -> StreamRun:
        """A detached view of a done job: it answers a repeated `end` with the final."""
        audio = job.audio_format()
        validator = PacketValidator(audio, job.frames)
        run = StreamRun(job, JobFiles(self.settings.data_dir, job.id), audio, validator, ended=True)
        run.outbox = asyncio.Queue()
        return run

    def _upload(self, run: StreamRun) -> Upload:
        return Upload(run, self._lifecycle, self._transcripts, self._disk)

    # ---- models -------------------------------------------------------------------------

    def models(self) -> list[str]:
        """The models streams may ask for: what connected workers serve, and the default."""
        served = set(self._dispatcher.models())
        default = self.default_model()
        return sorted(served | ({default} if default else set()))

    def default_model(self) -> str | None:
        """`--default-model`, else the model most connected workers serve (None: none)."""
        if self.settings.default_model:
            return self.settings.default_model
        most = self._dispatcher.models().most_common(1)
        return most[0][0] if most else None

    def resolve_model(self, name: str | None) -> str | None:
        """The model a stream asking for `name` gets (None: any worker's); OpenAI's model
        names stand for the default. Raises `UnknownModel` for one nobody serves."""
        if name is None or name in OPENAI_MODEL_ALIASES:
            return self.default_model()
        if name not in self.models():
            raise UnknownModel(f"model {name!r} is not served here (models: "
                               f"{', '.join(self.models()) or 'none yet'})")  # fmt: skip
        return name

    # ---- views --------------------------------------------------------------------------

    def job(self, job_id: str, who: Identity) -> Job | None:
        """The job if it exists and `who` may see it (another owner's job: None, so its
        existence is not given away)."""
        job = self._store.get(job_id)
        if job is None or not who.sees(job):
            return None
        return job

    def jobs(self, limit: int, statuses: list[JobStatus] | None, who: Identity) -> list[Job]:
        """The newest jobs `who` may see."""
        return self._store.list(limit=limit, statuses=statuses, owner=who.scope)

    async def transcript(self, job: Job) -> Transcript | None:
        """A done job's transcript (None if its file is gone; read by the disk agent)."""
        return await self._transcripts.load(job.id)

    def view(self) -> FarmView:
        """Workers, streams active and their limit, the queue: `/v1/farm`."""
        return self._lifecycle.farm_info()

    def events(self, who: Identity) -> AsyncIterator[str]:
        """Server-sent events of job and farm changes `who` may see, the farm first."""

        def snapshot() -> list[str]:
            return [self._events.format("farm", self.view().model_dump(mode="json"))]

        return self._events.stream(snapshot, who.scope)

    def readiness(self) -> dict[str, Any]:
        """`/readyz`: the job store open, ZeroMQ bound, at least one worker."""
        checks: dict[str, Any] = {
            "job_store": bool(getattr(self._store, "is_open", True)),
            "zmq_bound": self._dispatcher.bound,
            "workers": len(self._dispatcher.workers),
        }
        ready = checks["job_store"] and checks["zmq_bound"] and checks["workers"] >= 1
        return {"ready": ready, **checks}
