"""Generate the whisperfarm Grafana dashboard from code (grafana-foundation-sdk).

One generator, two copies:
  deploy/grafana/whisperfarm.json                       (import by hand or provision)
  deploy/helm/whisperfarm/files/grafana/whisperfarm.json  (the chart's ConfigMap for the sidecar)

Usage:
  python tools/gen_dashboard.py           write both copies
  python tools/gen_dashboard.py --check   exit 1 when a copy differs from what the code builds

Queries use two template variables: `$datasource` (a Prometheus data source) and `$namespace`
(all by default: `.*`, which also matches series without a namespace label). GPU panels read the
NVIDIA DCGM exporter; they stay empty on farms without GPUs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = (
    ROOT / "deploy" / "grafana" / "whisperfarm.json",
    ROOT / "deploy" / "helm" / "whisperfarm" / "files" / "grafana" / "whisperfarm.json",
)
UID = "whisperfarm"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"

EXTERNAL_METRICS = ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_UTIL")
"""Metrics the dashboard reads from other exporters (NVIDIA DCGM exporter), not from whisperfarm."""


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def targets(queries: list[Query], heatmap_format: bool = False) -> list[prometheus.Dataquery]:
    built = []
    for index, query in enumerate(queries):
        target = (
            prometheus.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend or "__auto")
            .ref_id(chr(ord("A") + index))
            .range()
            .datasource(DATASOURCE)
        )
        if heatmap_format:
            target = target.format(pm.PromQueryFormat.HEATMAP)
        built.append(target)
    return built


def graph(
    title: str, description: str, unit: str, queries: list[Query], width: int = 8
) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(8)
        .fill_opacity(10)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
        )
        .tooltip(
            cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)
        )
        .targets(targets(queries))  # type: ignore[arg-type]
    )


def single(title: str, description: str, unit: str, expr: str, width: int = 4) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(4)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        .graph_mode(cm.BigValueGraphMode.AREA)
        .targets(targets([q(expr)]))  # type: ignore[arg-type]
    )


def sel(metric: str) -> str:
    """A metric restricted to the selected namespaces."""
    return f"{metric}{{{NS}}}"


def rate(metric: str) -> str:
    return f"rate({sel(metric)}[{RATE}])"


def increase(metric: str) -> str:
    return f"increase({sel(metric)}[{RATE}])"


def quantiles(metric: str, levels: tuple[float, ...] = (0.5, 0.9, 0.99)) -> list[Query]:
    """Quantiles (p50/p90/p99 unless told) of a histogram over the whole farm."""
    return [
        q(
            f"histogram_quantile({p}, sum by (le) ({rate(metric + '_bucket')}))",
            f"p{round(p * 100)}",
        )
        for p in levels
    ]


def per_worker_quantile(level: float, metric: str) -> str:
    """A quantile of a histogram for each worker (`instance`)."""
    return f"histogram_quantile({level}, sum by (instance, le) ({rate(metric + '_bucket')}))"


B = "whisperfarm_broker_"
W = "whisperfarm_worker_"


def overview_row(dash: db.Dashboard) -> None:
    dash.with_row(db.Row("Farm"))
    stats = [
        ("Workers ready", "Workers connected to the broker and alive.", "none",
         f"sum({sel(B + 'workers_ready')})"),
        ("Streams active", "Streams holding an admission slot (queued included).", "none",
         f"sum({sel(B + 'streams_active')})"),
        ("Admission limit", "Admission slots (--max-active).", "none",
         f"sum({sel(B + 'streams_limit')})"),
        ("Queue depth", "Admitted streams waiting for a worker slot.", "none",
         f"sum({sel(B + 'queue_depth')})"),
        ("Worker slots busy", "Worker slots in use over all workers.", "percentunit",
         f"sum({sel(B + 'worker_slots_busy')}) / sum({sel(B + 'worker_slots')})"),
        ("Audio transcribed (1h)", "Seconds of audio in jobs finished over the last hour.", "s",
         f"sum(increase({sel(B + 'audio_seconds_transcribed_total')}[1h]))"),
    ]  # fmt: skip
    for title, description, unit, expr in stats:
        dash.with_panel(single(title, description, unit, expr))


def streams_row(dash: db.Dashboard) -> None:
    dash.with_row(db.Row("Streams and jobs"))
    panels = [
        graph("Streams", "Admitted streams against the limit, and those waiting for a worker.",
              "none", [q(f"sum({sel(B + 'streams_active')})", "active"),
                       q(f"sum({sel(B + 'streams_limit')})", "limit"),
                       q(f"sum({sel(B + 'queue_depth')})", "queued")]),
        graph("Admissions vs rejections",
              "New streams per second: admitted (start or resume) and refused.", "ops",
              [q(f"sum by (kind) ({rate(B + 'streams_admitted_total')})", "admitted {{kind}}"),
               q(f"sum by (reason) ({rate(B + 'streams_rejected_total')})",
                 "rejected {{reason}}")]),
        graph("Jobs finished", "Jobs reaching a final status, per second.", "ops",
              [q(f"sum by (status) ({rate(B + 'jobs_total')})", "{{status}}")]),
        graph("Job latency", "From the client's end (or a re-queue) to the final transcript.",
              "s", quantiles(B + "job_latency_seconds")),
        graph("Broker event loop lag", "How late a 100 ms timer of the broker's event loop "
              "fires: the wait that every stream's packets, acks and finals share (a busy "
              "host, a slow callback). Above 100 ms at the p99 for 10 minutes: alert "
              "WhisperfarmBrokerEventLoopLagging.",
              "s", quantiles(B + "event_loop_lag_seconds")),
        graph("Errors sent to clients", "Error messages per second, by protocol error code.",
              "ops", [q(f"sum by (code) ({rate(B + 'stream_errors_total')})", "{{code}}")]),
        graph("Upload rate", "Audio bytes and packets received from clients per second, and "
              "uploads paused because the disk fell behind (over --max-disk-backlog-mb).",
              "short",
              [q(f"sum({rate(B + 'bytes_received_total')})", "bytes"),
               q(f"sum({rate(B + 'packets_received_total')})", "packets"),
               q(f"sum({rate(B + 'upload_pauses_total')})", "uploads paused")]),
        graph("Disk backlog", "Received audio waiting to be written to the spools.", "bytes",
              [q(f"sum({sel(B + 'disk_backlog_bytes')})", "backlog")]),
        graph("Storage faults", "Exits of the broker's disk agent, the process that writes "
              "spools and transcripts (uploads open at the time were interrupted), and transcripts "
              "it could not write after their final went out (those jobs failed). Should stay 0.",
              "short", [q(f"sum({increase(B + 'disk_agent_exits_total')})", "disk agent exits"),
                        q(f"sum({increase(B + 'transcripts_not_stored_total')})",
                          "transcripts not stored")]),
    ]  # fmt: skip
    for panel in panels:
        dash.with_panel(panel)


def speed_row(dash: db.Dashboard) -> None:
    dash.with_row(db.Row("Throughput and speed"))
    panels = [
        graph("Throughput (audio seconds per second)",
              "Audio received, decoded by workers (window overlaps count twice), in finished jobs.",
              "none", [q(f"sum({rate(B + 'audio_seconds_received_total')})", "received"),
                       q(f"sum({rate(W + 'audio_decoded_seconds_total')})", "decoded"),
                       q(f"sum({rate(B + 'audio_seconds_transcribed_total')})", "transcribed")]),
        graph("Real-time factor, jobs",
              "Job wall time (accepted to final) / audio duration; below 1: faster than real time.",
              "none", quantiles(B + "job_realtime_factor")),
        graph("Real-time factor, engine calls",
              "Inference seconds per second of audio, per engine call.",
              "none", quantiles(W + "real_time_factor")),
    ]  # fmt: skip
    for panel in panels:
        dash.with_panel(panel)


def live_row(dash: db.Dashboard) -> None:
    dash.with_row(db.Row("Live mode"))
    lag = (
        "sent to the client minus the arrival at the broker of the audio up to its end "
        "(the server's share of what a speaker waits for)."
    )
    panels = [
        graph("Live partial lag", f"A live partial {lag}", "s",
              quantiles(B + "live_partial_lag_seconds", (0.5, 0.95)), width=12),
        graph("Live commit lag", f"A committed live segment {lag} Above 5 s at the p95 for "
              "5 minutes: alert WhisperfarmLiveCommitLagHigh.", "s",
              quantiles(B + "live_commit_lag_seconds", (0.5, 0.95)), width=12),
        graph("Live streams", "Live streams in progress at the broker, and held by each "
              "worker.", "none",
              [q(f"sum({sel(B + 'live_streams')})", "broker"),
               q(f"sum by (instance) ({sel(W + 'live_streams')})", "{{instance}}")], width=12),
        graph("Live step time per worker", "Wall time of one live decode step (a stream's "
              "uncommitted audio decoded again), p50 and p95 per worker; above --live-step-ms "
              "every live stream on the worker steps less often.", "s",
              [q(per_worker_quantile(p, W + "live_step_seconds"),
                 f"p{round(p * 100)} {{{{instance}}}}") for p in (0.5, 0.95)], width=12),
        graph("OpenAI Realtime", "Realtime transcription sessions connected (each is a live "
              "stream above), and the turns that ended, completed or failed.", "short",
              [q(f"sum({sel(B + 'realtime_sessions')})", "sessions"),
               q(f"sum by (outcome) ({increase(B + 'realtime_turns_total')})",
                 "turns {{outcome}}")], width=12),
    ]  # fmt: skip
    for panel in panels:
        dash.with_panel(panel)


def batch_heatmap() -> heatmap.Panel:
    return (
        heatmap.Panel()
        .title("Batch sizes")
        .description("Distribution of decode requests per engine call, over all workers.")
        .datasource(DATASOURCE)
        .span(8)
        .height(8)
        .calculate(False)
        .show_legend()
        .show_tooltip()
        .targets(
            targets(  # type: ignore[arg-type]
                [q(f"sum by (le) ({rate(W + 'decode_batch_size_bucket')})", "{{le}}")],
                heatmap_format=True,
            )
        )
    )


def workers_row(dash: db.Dashboard) -> None:
    dash.with_row(db.Row("Workers"))
    per_worker = "{{instance}}"
    panels = [
        graph("Utilisation per worker", "Streams held / slots, per worker.", "percentunit",
              [q(f"sum by (instance) ({sel(W + 'streams_active')})"
                 f" / sum by (instance) ({sel(W + 'slots')})", per_worker)]),
        graph("Mean batch size per worker",
              "Decode requests per engine call (cross-stream batching), the most one "
              "forward pass may take (--max-batch capped by --batch-memory-mb), and how many "
              "passes run at once (--parallel-batches).", "none",
              [q(f"sum by (instance) ({rate(W + 'decode_batch_size_sum')})"
                 f" / sum by (instance) ({rate(W + 'decode_batch_size_count')})", per_worker),
               q(f"max by (instance) ({sel(W + 'max_batch')})", "limit {{instance}}"),
               q(f"max by (instance) ({sel(W + 'parallel_batches')})",
                 "parallel passes {{instance}}")]),
        batch_heatmap(),
        graph("Inference time per worker (p95)",
              "Wall time of one engine call, of one batched forward pass, and of one "
              "stream's speaker labels (diarize).", "s",
              [q(per_worker_quantile(0.95, W + "inference_seconds"), "call {{instance}}"),
               q(per_worker_quantile(0.95, W + "forward_seconds"), "forward {{instance}}"),
               q(per_worker_quantile(0.95, W + "diarize_seconds"),
                 "speaker labels {{instance}}")]),
        graph("Draining workers", "Workers finishing their streams before they stop.", "none",
              [q(f"sum({sel(W + 'draining')})", "draining")]),
        graph("Streams leaving workers",
              "Per second, by outcome (done, failed, cancelled, replaced, dropped).", "ops",
              [q(f"sum by (outcome) ({rate(W + 'streams_finished_total')})", "{{outcome}}")]),
        graph("Workers lost and re-dispatches",
              "Workers declared dead or gone, streams moved, stale results, model loads.", "none",
              [q(f"sum by (reason) ({increase(B + 'workers_lost_total')})", "lost {{reason}}"),
               q(f"sum({increase(B + 'redispatches_total')})", "re-dispatched"),
               q(f"sum({increase(B + 'stale_results_total')})", "stale results"),
               q(f"sum({increase(B + 'bad_worker_messages_total')})", "bad messages"),
               q(f"sum by (engine, model) ({increase(W + 'model_loads_total')})",
                 "model loads {{engine}} {{model}}"),
               q(f"sum({increase(W + 'speaker_model_loads_total')})", "speaker model loads")]),
    ]  # fmt: skip
    for panel in panels:
        dash.with_panel(panel)


def gpu_row(dash: db.Dashboard) -> None:
    dash.with_row(db.Row("GPU (NVIDIA DCGM exporter; empty without GPUs)"))
    per_gpu = "{{Hostname}} GPU {{gpu}}"
    panels = [
        graph("Worker GPU memory (torch)", "Memory torch holds per worker (openai-whisper, cuda).",
              "bytes", [q(f"sum by (instance) ({sel(W + 'gpu_memory_bytes')})", "{{instance}}")],
              width=24),
        graph("GPU memory used", "Frame-buffer memory in use per GPU (DCGM_FI_DEV_FB_USED).",
              "bytes", [q(f"sum by (Hostname, gpu) ({sel('DCGM_FI_DEV_FB_USED')}) * 1048576",
                          per_gpu)], width=12),
        graph("GPU utilisation", "Share of time a kernel ran, per GPU (DCGM_FI_DEV_GPU_UTIL).",
              "percent", [q(f"avg by (Hostname, gpu) ({sel('DCGM_FI_DEV_GPU_UTIL')})", per_gpu)],
              width=12),
    ]  # fmt: skip
    for panel in panels:
        dash.with_panel(panel)


def variables() -> list[Any]:
    datasource = db.DatasourceVariable("datasource").label("Data source").type("prometheus")
    namespace = (
        db.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DATASOURCE)
        .query("label_values(whisperfarm_broker_workers_ready, namespace)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .all_value(".*")
        .multi(True)
    )
    return [datasource, namespace]


def build() -> dict[str, Any]:
    """The dashboard as the JSON-ready dict Grafana imports."""
    dash = (
        db.Dashboard("whisperfarm")
        .uid(UID)
        .description(
            "Speech-to-text farm: streams, admissions, live lag, throughput, speed, workers, GPUs."
        )
        .tags(["whisperfarm", "speech-to-text"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time("now-3h", "now")
        .refresh("30s")
        .variables(variables())
    )
    for row in (overview_row, streams_row, live_row, speed_row, workers_row, gpu_row):
        row(dash)
    encoded: dict[str, Any] = json.loads(json.dumps(dash.build(), cls=JSONEncoder))
    for number, panel in enumerate(encoded["panels"], start=1):
        panel["id"] = number  # stable ids: links and diffs stay meaningful
    return encoded


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when a written copy is stale")
    args = parser.parse_args(argv)
    text = render()
    stale = [p for p in OUTPUTS if not p.exists() or p.read_text() != text]
    if args.check:
        for path in stale:
            print(f"stale: {shown(path)} (run python tools/gen_dashboard.py)")
        return 1 if stale else 0
    for path in OUTPUTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
