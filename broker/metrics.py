"""Every broker metric, declared once. Labels are bounded: never a job or stream id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

STREAMS_ACTIVE = Gauge("whisperfarm_broker_streams_active", "Streams holding an admission slot")
STREAMS_LIMIT = Gauge("whisperfarm_broker_streams_limit", "Admission slots (--max-active)")
STREAMS_ADMITTED = Counter(
    "whisperfarm_broker_streams_admitted_total", "Streams admitted", ["kind"]
)
STREAMS_REJECTED = Counter(
    "whisperfarm_broker_streams_rejected_total", "Streams refused at admission", ["reason"]
)
UPLOAD_PAUSES = Counter(
    "whisperfarm_broker_upload_pauses_total",
    "Times an upload's reading was paused because spool writes fell behind the disk",
)
DISK_BACKLOG = Gauge(
    "whisperfarm_broker_disk_backlog_bytes", "Received audio bytes waiting to be written to spools"
)
DISK_AGENT_EXITS = Counter(
    "whisperfarm_broker_disk_agent_exits_total",
    "Times the broker's disk agent exited on its own (open uploads interrupted; a new one starts)",
)
TRANSCRIPTS_NOT_STORED = Counter(
    "whisperfarm_broker_transcripts_not_stored_total",
    "Transcripts the broker could not write after their final went out (the job is failed)",
)
PACKETS_RECEIVED = Counter("whisperfarm_broker_packets_received_total", "Audio packets received")
BYTES_RECEIVED = Counter("whisperfarm_broker_bytes_received_total", "Audio bytes received")
AUDIO_SECONDS_RECEIVED = Counter(
    "whisperfarm_broker_audio_seconds_received_total", "Audio seconds received"
)
STREAM_ERRORS = Counter(
    "whisperfarm_broker_stream_errors_total", "Error messages sent to clients", ["code"]
)
JOBS_FINISHED = Counter("whisperfarm_broker_jobs_total", "Jobs reaching a final status", ["status"])
JOB_LATENCY = Histogram(
    "whisperfarm_broker_job_latency_seconds",
    "From the client's end (or re-queue) to the final transcript",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
EVENT_LOOP_LAG = Histogram(
    "whisperfarm_broker_event_loop_lag_seconds",
    "How late a 100 ms timer of the broker's event loop fires: the wait every stream's "
    "packets, acks and finals share",
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LIVE_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30)
"""From a word-by-word display (tenths of a second) to a stream that fell a window behind;
5 s, the commit-lag alert's threshold, is a bucket edge."""
LIVE_PARTIAL_LAG = Histogram(
    "whisperfarm_broker_live_partial_lag_seconds",
    "A live partial sent to its client minus the arrival of the audio up to its end",
    buckets=LIVE_LAG_BUCKETS,
)
LIVE_COMMIT_LAG = Histogram(
    "whisperfarm_broker_live_commit_lag_seconds",
    "A live segment sent to its client minus the arrival of the audio up to its end",
    buckets=LIVE_LAG_BUCKETS,
)
LIVE_STREAMS = Gauge("whisperfarm_broker_live_streams", "Live streams in progress")
REALTIME_SESSIONS = Gauge(
    "whisperfarm_broker_realtime_sessions", "OpenAI Realtime transcription sessions connected"
)
REALTIME_TURNS = Counter(
    "whisperfarm_broker_realtime_turns_total",
    "OpenAI Realtime turns ended: their transcription completed or failed",
    ["outcome"],
)
JOB_RTF = Histogram(
    "whisperfarm_broker_job_realtime_factor",
    "Job wall time (accepted to final) divided by its audio duration; < 1 is faster than real time",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
)
AUDIO_SECONDS_TRANSCRIBED = Counter(
    "whisperfarm_broker_audio_seconds_transcribed_total", "Audio seconds of finished jobs"
)
QUEUE_DEPTH = Gauge("whisperfarm_broker_queue_depth", "Admitted streams waiting for a worker slot")
WORKERS_READY = Gauge("whisperfarm_broker_workers_ready", "Workers connected and alive")
WORKER_SLOTS = Gauge("whisperfarm_broker_worker_slots", "Stream slots over all workers")
WORKER_SLOTS_BUSY = Gauge("whisperfarm_broker_worker_slots_busy", "Worker slots in use")
WORKERS_LOST = Counter(
    "whisperfarm_broker_workers_lost_total", "Workers declared dead or gone", ["reason"]
)
REDISPATCHES = Counter("whisperfarm_broker_redispatches_total", "Streams moved to another worker")
STALE_RESULTS = Counter(
    "whisperfarm_broker_stale_results_total", "Worker results of a superseded attempt, dropped"
)
BAD_WORKER_MESSAGES = Counter(
    "whisperfarm_broker_bad_worker_messages_total", "Malformed ZeroMQ messages dropped"
)
