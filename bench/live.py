"""Live mode: N real-time streams of real speech, and how far the text trails the speaker.

    .venv/bin/python bench/live.py [--clients 1,3,6,10] [--seconds 40]
        [--engine faster-whisper|openai-whisper] [--worker-args "--live-step-ms 700"]
        [--no-realtime] [--json out.json]

For each N in `--clients`: a fresh broker and one worker (tiny.en, `--slots N`) on loopback;
after a warm-up file, N clients each send about 40 s of real speech (the recordings of
tests/fixtures/audio one after another, every file starting with a different one) as a live
stream with word timestamps, paced at real time, their starts spread over one second. Then the
same audio goes again as plain files (unpaced, not live), for the WER to compare with; and
(unless `--no-realtime`) as N OpenAI Realtime sessions (bench/realtime_lag.py), for the
Realtime edge's delta lag beside the native protocol's lags, on the same farm.

Per N it prints the word lag (bench/word_lag.py: first shown correctly minus sent) p50/p95
over all words of all streams, for partials and for commits; end→final p95 (the client's `end`
to its `final`); streams complete (a final whose WER against what was said is under 0.2); the
mean WER of the live finals beside that of the files; the worker's CPU seconds over the live
streams and its RSS at rest and at peak; and, read from the broker's own histograms, the p95
of its server-side partial and commit lags. Then the issue's targets with what was measured,
and WhisperLive's figures quoted by the issue beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shlex
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SAMPLE_RATE,
    Speech,
    cpu_seconds,
    dump,
    farm,
    final_text,
    machine,
    real_speech,
    rss_mb,
    stream_all,
    table,
    worker_pid,
)
from bench.common import word_error_rate as wer
from bench.realtime_lag import (
    RealtimeRun,
    delta_lags,
    event_lags,
    realtime_session,
    to_24k,
)
from bench.word_lag import word_lags
from tests.exposition import samples
from tests.farm import Broker
from tests.wsclient import LiveReply, stream_live
from whisperfarm.packets import FRAMES_PER_PACKET

MAX_WER = 0.2
"""A live final is complete when its WER against what was said is below this."""
PACKET_S = FRAMES_PER_PACKET / SAMPLE_RATE
START_SPREAD_S = 1.0
"""The N streams start at even intervals over this long."""

WHISPERLIVE = {
    1: ("0.6", "4.1", ""),
    3: ("1.1–1.5", "9–10", ""),
    6: ("2.9–3.7", "20–26", "4.7–6.7"),
}
"""WhisperLive on the same kind of machine and speech, as issue 18 quotes it: partial lag
median, p95, and how far committed text trailed (seconds)."""


@dataclass
class Result:
    """One N: the figures of the table, and the raw lags behind them."""

    clients: int
    partial_lags: list[float] = field(default_factory=list)
    commit_lags: list[float] = field(default_factory=list)
    end_to_final: list[float] = field(default_factory=list)
    complete: int = 0
    live_wer: list[float] = field(default_factory=list)
    file_wer: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    worker_cpu_s: float = 0.0
    rss_rest_mb: float = 0.0
    rss_peak_mb: float = 0.0
    broker_p95: dict[str, float] = field(default_factory=dict)
    delta_lags: list[float] = field(default_factory=list)
    """The Realtime sessions' words: delta arrival minus sent (bench/realtime_lag.py)."""
    delta_unmatched: int = 0
    started_lags: list[float] = field(default_factory=list)
    """The Realtime sessions' turns: `speech_started` arrival minus the sending of the
    audio where it says the voice began."""
    stopped_lags: list[float] = field(default_factory=list)
    """The same for `speech_stopped`, at the audio where it says the turn ended."""


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


async def live_streams(broker: Broker, files: Sequence[Speech]) -> list[LiveReply]:
    """Every file as a live stream at real time, the starts spread over `START_SPREAD_S`."""

    async def one(index: int, speech: Speech) -> LiveReply:
        await asyncio.sleep(index * START_SPREAD_S / len(files))
        return await stream_live(broker.ws, speech.pcm, name=speech.name, word_timestamps=True)

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(files))))


async def realtime_sessions(broker: Broker, files: Sequence[Speech]) -> list[RealtimeRun]:
    """Every file as a Realtime session at real time, the starts spread as the streams'."""

    async def one(index: int, speech: Speech) -> RealtimeRun:
        await asyncio.sleep(index * START_SPREAD_S / len(files))
        return await realtime_session(broker, to_24k(speech.audio, SAMPLE_RATE), PACKET_S)

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(files))))


def score_realtime(
    result: Result, replies: Sequence[LiveReply], sessions: Sequence[RealtimeRun]
) -> None:
    """Delta lags of each session, timed by the native stream's final of the same audio."""
    for index, (reply, session) in enumerate(zip(replies, sessions, strict=True)):
        finals = [m for m in reply.messages if m.get("type") == "final"]
        if session.error or not finals:
            result.failures.append(f"realtime {index}: {session.error or 'no native final'}")
            continue
        lags, unmatched = delta_lags(session, finals[0], PACKET_S)
        result.delta_lags += lags
        result.delta_unmatched += unmatched
        result.started_lags += event_lags(session.starts, session, PACKET_S)
        result.stopped_lags += event_lags(session.stops, session, PACKET_S)


def score(result: Result, files: Sequence[Speech], replies: Sequence[LiveReply]) -> None:
    """Lags, end→final and WER of each live stream into `result`."""
    for speech, reply in zip(files, replies, strict=True):
        finals = [i for i, m in enumerate(reply.messages) if m.get("type") == "final"]
        if not finals:
            result.failures.append(f"{speech.name}: {str(reply.last)[:100]}")
            continue
        final = reply.messages[finals[0]]
        lags = word_lags(reply.messages, reply.arrived, reply.sent, PACKET_S)
        result.partial_lags += lags.partial
        result.commit_lags += lags.commit
        result.end_to_final.append(reply.arrived[finals[0]] - reply.ended)
        error = wer(speech.reference, str(final["text"]))
        result.live_wer.append(error)
        result.complete += error < MAX_WER


def histogram_quantile(text: str, name: str, q: float) -> float:
    """The `q` quantile of histogram `name` in an exposition, interpolated within its
    bucket as Prometheus's `histogram_quantile` does; nan without observations."""
    buckets = sorted((float(s.labels["le"]), s.value) for s in samples(text, name + "_bucket"))
    total = buckets[-1][1] if buckets else 0.0
    if total == 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = upper, count
    return lower


def broker_lags(broker: Broker) -> dict[str, float]:
    text = httpx.get(broker.http + "/metrics", timeout=10).text
    return {
        kind: histogram_quantile(text, f"whisperfarm_broker_live_{kind}_lag_seconds", 0.95)
        for kind in ("partial", "commit")
    }


def measure(
    clients: int, files: list[Speech], engine: str, extra: list[str], tmp: Path, realtime: bool
) -> Result:
    """A fresh farm for `clients` live streams; the same audio as Realtime sessions and
    as files after them."""
    args = ["--model", "tiny.en", "--model-cache-dir", str(tmp / "models"),
            "--slots", str(clients), *extra]  # fmt: skip
    result = Result(clients)
    with farm(tmp, engine, *args) as (broker, workers):
        pid = worker_pid(workers[0])
        asyncio.run(stream_all(broker, files[:1]))  # first-call costs are not live costs
        result.rss_rest_mb = rss_mb(pid)
        cpu = cpu_seconds(pid)
        replies = asyncio.run(live_streams(broker, files))
        result.worker_cpu_s = cpu_seconds(pid) - cpu
        result.rss_peak_mb = rss_mb(pid, "VmHWM")
        result.broker_p95 = broker_lags(broker)
        sessions = asyncio.run(realtime_sessions(broker, files)) if realtime else []
        file_replies, _ = asyncio.run(stream_all(broker, files))
    score(result, files, replies)
    if realtime:
        score_realtime(result, replies, sessions)
    result.file_wer = [
        wer(s.reference, final_text(r) or "") for s, r in zip(files, file_replies, strict=True)
    ]
    return result


def percent(values: Sequence[float]) -> str:
    return f"{100 * float(np.mean(values)):.1f} %" if values else "-"


def spread(values: Sequence[float]) -> str:
    return f"{seconds(percentile(values, 50))} / {seconds(percentile(values, 95))}"


def seconds(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def report(results: list[Result]) -> None:
    rows = []
    for r in results:
        theirs = WHISPERLIVE.get(r.clients, ("", "", ""))
        rows.append([
            r.clients,
            seconds(percentile(r.partial_lags, 50)), seconds(percentile(r.partial_lags, 95)),
            seconds(percentile(r.commit_lags, 50)), seconds(percentile(r.commit_lags, 95)),
            seconds(percentile(r.end_to_final, 95)), f"{r.complete}/{r.clients}",
            percent(r.live_wer), percent(r.file_wer), r.worker_cpu_s,
            f"{r.rss_rest_mb:.0f} / {r.rss_peak_mb:.0f}",
            f"{seconds(r.broker_p95['partial'])} / {seconds(r.broker_p95['commit'])}",
            " / ".join(x for x in theirs if x) or "-",
        ])  # fmt: skip
    print(table(["N", "partial p50", "partial p95", "commit p50", "commit p95",
                 "end→final p95", "complete", "live WER", "file WER", "worker CPU s",
                 "worker RSS rest / peak MB", "broker p95 partial / commit",
                 "WhisperLive partial p50 / p95 / commit"], rows))  # fmt: skip
    print(
        "\nlags in seconds. Word lag as in ARCHITECTURE.md: first shown correctly minus sent."
        "\nbroker p95: its histograms, sent minus arrival of the audio up to `end`."
    )
    for r in results:
        for failure in r.failures:
            print(f"N={r.clients}: no final: {failure}")
    if any(r.delta_lags for r in results):
        print()
        print(table(["N", "native partial p50 / p95", "native commit p50 / p95",
                     "Realtime delta p50 / p95", "Realtime words untimed",
                     "speech_started p50 / p95 (turns)", "speech_stopped p50 / p95"], [[
            r.clients, spread(r.partial_lags), spread(r.commit_lags), spread(r.delta_lags),
            f"{r.delta_unmatched} of {r.delta_unmatched + len(r.delta_lags)}",
            f"{spread(r.started_lags)} ({len(r.started_lags)})", spread(r.stopped_lags),
        ] for r in results]))  # fmt: skip
        print("Realtime delta: committed text only (a delta is never revised), so it compares "
              "with the native commit lag; the sessions run after the native streams."
              "\nspeech_started / speech_stopped: its arrival minus the sending of the audio "
              "where it says the turn's voice began / its audio ended.")  # fmt: skip
    print()
    print(table(["target", "wanted", "measured", "met"], targets(results)))


def targets(results: list[Result]) -> list[list[str]]:
    """Issue 18's targets, for the N that were run."""
    by_n = {r.clients: r for r in results}
    rows = []

    def lag(n: int, what: str, values: list[float], limit: float) -> None:
        value = percentile(values, 95)
        rows.append([f"N={n} {what}", f"≤ {limit} s", seconds(value), met(value <= limit)])

    if 1 in by_n:
        lag(1, "partial lag p95", by_n[1].partial_lags, 1.0)
    if 6 in by_n:
        six = by_n[6]
        lag(6, "partial lag p95", six.partial_lags, 1.5)
        lag(6, "commit lag p95", six.commit_lags, 3.5)
        lag(6, "end→final p95", six.end_to_final, 2.0)
        gap = 100 * (float(np.mean(six.live_wer or [1.0])) - float(np.mean(six.file_wer)))
        rows.append(["N=6 live WER - file WER", "≤ 2 points", f"{gap:.1f}", met(gap <= 2)])
    for r in results:
        if r.clients in (6, 10):
            rows.append([f"N={r.clients} streams complete", f"{r.clients}/{r.clients}",
                         f"{r.complete}/{r.clients}", met(r.complete == r.clients)])  # fmt: skip
    return rows


def met(ok: bool) -> str:
    return "yes" if ok else "NO"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,3,6,10", help="N to run, comma-separated")
    parser.add_argument("--seconds", type=float, default=40.0, help="audio per stream")
    parser.add_argument("--engine", default="faster-whisper")
    parser.add_argument("--worker-args", default="", help="more worker flags, one string")
    parser.add_argument("--no-realtime", action="store_true",
                        help="skip the OpenAI Realtime sessions")  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",")]
    print(f"machine: {machine()}; engine {args.engine}; worker flags {args.worker_args or '-'}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp_name:
        tmp = Path(tmp_name)
        files = real_speech(max(counts), args.seconds, tmp)
        print(f"{len(files)} files of {min(s.seconds for s in files):.1f}–"
              f"{max(s.seconds for s in files):.1f} s of real speech\n")  # fmt: skip
        for n in counts:
            extra = shlex.split(args.worker_args)
            results.append(measure(n, files[:n], args.engine, extra, tmp, not args.no_realtime))
    report(results)
    dump(args.json, {"engine": args.engine, "results": [asdict(r) for r in results]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
