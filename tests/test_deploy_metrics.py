"""Metrics and alerts: live expositions, docs/metrics.md, alert rules, a real Prometheus server.

Needs Debian's `prometheus` package (promtool and the server): CI fails without it, elsewhere
these tests skip.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import broker.metrics
import workers.metrics
from tests.exposition import families, series_names
from tests.farm import wait_for
from tests.test_deploy_support import (
    ALERTS,
    ALERTS_TEST,
    DASHBOARD,
    ROOT,
    LiveFarm,
    concrete,
    dashboard_exprs,
    live_farm,
    need_tool,
    promql_metric_names,
    run,
    start_live_farm,
)

__all__ = ["live_farm"]  # the fixture, imported for this module's tests

METRICS_DOC = ROOT / "docs" / "metrics.md"
PROMETHEUS_APT = "apt-get install prometheus"


def promtool() -> str:
    return need_tool("promtool", PROMETHEUS_APT)


# ---- live expositions ----------------------------------------------------------------------


@pytest.mark.parametrize("component", ["broker", "worker"])
def test_live_exposition_passes_promtool(live_farm: LiveFarm, component: str) -> None:
    text = live_farm.broker_scrape() if component == "broker" else live_farm.worker_scrape()
    prefix = f"whisperfarm_{component}_"
    assert any(name.startswith(prefix) for name in families(text)), text[:2000]
    result = run([promtool(), "check", "metrics"], stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "_created" not in text, "PROMETHEUS_DISABLE_CREATED_SERIES is not honoured"


# ---- docs/metrics.md -------------------------------------------------------------------------


def documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name → (type, labels) from the tables of docs/metrics.md."""
    rows = re.findall(
        r"^\| `(whisperfarm_\w+)` \| (\w+) \|([^|]*)\|[^|]+\|$",
        METRICS_DOC.read_text(),
        flags=re.MULTILINE,
    )
    table: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, kind, labels in rows:
        assert name not in table, f"{name} documented twice"
        table[name] = (kind, tuple(re.findall(r"`(\w+)`", labels)))
    return table


def declared() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name (as exposed) → (type, labels) of every metric object in the metrics modules."""
    table: dict[str, tuple[str, tuple[str, ...]]] = {}
    for module in (broker.metrics, workers.metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                kind = value._type
                assert kind is not None  # None only on the abstract base class
                name = value._name + ("_total" if kind == "counter" else "")
                table[name] = (kind, tuple(value._labelnames))
    return table


def test_docs_list_exactly_the_live_metrics(live_farm: LiveFarm) -> None:
    live = {
        **families(live_farm.broker_scrape()),
        **families(live_farm.worker_scrape()),
    }
    live = {name: kind for name, kind in live.items() if name.startswith("whisperfarm_")}
    docs = documented()
    assert sorted(docs) == sorted(live), "docs/metrics.md and a live scrape disagree"
    assert {name: kind for name, (kind, _) in docs.items()} == live
    # Labels are invisible in a scrape until a series exists: compare with the declarations.
    assert docs == declared()


# ---- alert rules ---------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check() -> None:
    result = run([promtool(), "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_unit_tests() -> None:
    result = run([promtool(), "test", "rules", str(ALERTS_TEST)])
    assert result.returncode == 0, result.stdout + result.stderr


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_is_unit_tested_and_documented() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert names == tested, "every alert needs a unit test in which it fires"
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    required = {"WhisperfarmNoWorkersReady", "WhisperfarmOverloaded", "WhisperfarmJobFailures"}
    assert required | {"WhisperfarmJobLatencyHigh", "WhisperfarmLiveCommitLagHigh"} <= names


def test_alert_rules_read_only_live_metrics(live_farm: LiveFarm) -> None:
    live = series_names(live_farm.broker_scrape()) | series_names(live_farm.worker_scrape())
    for rule in alert_rules():
        used = promql_metric_names(rule["expr"])
        assert used, rule["alert"]
        # A labelled counter has no series before its first increment; its family is exposed.
        assert used <= live, f"{rule['alert']} reads {sorted(used - live)}"


# ---- a real Prometheus server --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


FAST_ALERT = "WhisperfarmNoWorkersReady"


def fast_rules(path: Path) -> Path:
    """alerts.yaml with FAST_ALERT's `for` cut to 2 s, so the test sees it fire quickly."""
    data = yaml.safe_load(ALERTS.read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == FAST_ALERT:
                rule["for"] = "2s"
    path.write_text(yaml.safe_dump(data))
    return path


class Prometheus:
    def __init__(self, tmp: Path, farm: LiveFarm) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        broker_target = farm.broker.http.removeprefix("http://")
        worker_target = farm.worker_metrics_url.removeprefix("http://").removesuffix("/metrics")
        jobs = {"whisperfarm-broker": broker_target, "whisperfarm-worker": worker_target}
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(fast_rules(tmp / "alerts.yaml"))],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in jobs.items()
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = tmp / "prometheus.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [need_tool("prometheus", PROMETHEUS_APT),
                 f"--config.file={tmp / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def reply(self, expr: str) -> dict[str, Any]:
        reply: dict[str, Any] = httpx.get(
            f"{self.url}/api/v1/query", params={"query": expr}, timeout=10
        ).json()
        return reply

    def query(self, expr: str) -> list[dict[str, Any]]:
        reply = self.reply(expr)
        assert reply["status"] == "success", reply
        result: list[dict[str, Any]] = reply["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alert_state(self, name: str) -> str | None:
        alerts = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        states = [a["state"] for a in alerts if a["labels"]["alertname"] == name]
        return states[0] if states else None

    def wait(self, check: Any, what: str, timeout: float = 30) -> Any:
        return wait_for(check, timeout, what, self.log)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def prometheus_and_farm(tmp_path: Path) -> Iterator[tuple[Prometheus, LiveFarm]]:
    need_tool("prometheus", PROMETHEUS_APT)
    farm = start_live_farm(tmp_path)
    server = Prometheus(tmp_path, farm)
    try:
        yield server, farm
    finally:
        server.stop()
        farm.worker.process.stop()
        farm.broker.process.stop()


def ready(server: Prometheus) -> bool:
    try:
        return httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        if server.process.poll() is not None:
            raise RuntimeError(server.log.read_text()[-4000:]) from None
        return False


@pytest.mark.slow
def test_prometheus_scrapes_the_farm_and_alerts_when_the_worker_dies(
    prometheus_and_farm: tuple[Prometheus, LiveFarm],
) -> None:
    server, farm = prometheus_and_farm
    server.wait(lambda: ready(server), "Prometheus to start")
    for job in ("whisperfarm-broker", "whisperfarm-worker"):
        server.wait(lambda job=job: server.value(f'up{{job="{job}"}}') == 1, f"a {job} scrape")
    assert server.value("whisperfarm_broker_workers_ready") == 1
    assert server.value("whisperfarm_broker_worker_slots") == 4
    assert server.value("whisperfarm_worker_slots") == 4
    assert server.value("whisperfarm_broker_streams_limit") == 10
    assert server.alert_state(FAST_ALERT) is None

    # Every dashboard query is valid PromQL for this server (an error reply fails the query).
    dashboard = json.loads(DASHBOARD.read_text())
    replies = {where: server.reply(concrete(expr)) for where, expr in dashboard_exprs(dashboard)}
    assert {w: r for w, r in replies.items() if r["status"] != "success"} == {}

    farm.worker.process.stop(signal.SIGKILL)
    server.wait(lambda: server.value('up{job="whisperfarm-worker"}') == 0, "the worker target down")
    server.wait(
        lambda: server.value("whisperfarm_broker_workers_ready") == 0, "the broker to notice"
    )
    started = time.monotonic()
    server.wait(lambda: server.alert_state(FAST_ALERT) == "firing", f"{FAST_ALERT} to fire")
    assert time.monotonic() - started < 20
    assert server.value(f'ALERTS{{alertname="{FAST_ALERT}",alertstate="firing"}}') == 1
    assert server.value('whisperfarm_broker_workers_lost_total{reason="heartbeat"}') == 1
