"""Shared helpers of the deploy tests (tests/test_deploy_*.py), and tests of the helpers.

- `need_tool` / `need_module`: a missing tool fails the test when CI == "true" (CI must install
  it), and skips it elsewhere with the reason.
- `live_farm`: a real broker and a null-engine worker on loopback, started as the container
  image and the chart run them (`PROMETHEUS_DISABLE_CREATED_SERIES=True`), with both scrapes.
- `promql_metric_names`: what a PromQL expression reads (what a scrape exposes: `tests.exposition`).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.exposition import families, metric_sum, series_names
from tests.farm import Broker, Worker, start_broker, start_worker

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "whisperfarm"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"
CHART_ALERTS = CHART / "files" / "prometheus" / "alerts.yaml"
"""The PrometheusRule's rule file: a copy of ALERTS (Helm reads only files inside the chart)."""
DASHBOARD = ROOT / "deploy" / "grafana" / "whisperfarm.json"
CHART_DASHBOARD = CHART / "files" / "grafana" / "whisperfarm.json"
IN_CI = os.environ.get("CI") == "true"
DEPLOY_ENV = {"PROMETHEUS_DISABLE_CREATED_SERIES": "True"}
"""Environment the image and the chart give every component (see Dockerfile, _helpers.tpl)."""


def missing(what: str, install: str) -> None:
    """Fail in CI (the tool must be installed there), skip elsewhere."""
    message = f"{what} is not installed ({install})"
    if IN_CI:
        pytest.fail(f"{message}; CI must install it")
    pytest.skip(message)


def need_tool(name: str, install: str) -> str:
    """Path of a command-line tool: the test venv's bin/ first, then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        missing(f"`{name}`", install)
    assert found is not None
    return found


def need_module(name: str, install: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"Python module {name!r}", install)
        raise


def checkov() -> str:
    """checkov lives in its own venv (it pins packaging/pytest versions of its own)."""
    candidates = [os.environ.get("CHECKOV", ""), str(ROOT / ".venv-checkov" / "bin" / "checkov")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    found = shutil.which("checkov")
    if found is None:
        missing(
            "`checkov`", "python3 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov"
        )
    assert found is not None
    return found


def run(
    args: list[str], stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


# ---- a live farm -------------------------------------------------------------------------------


@dataclass
class LiveFarm:
    broker: Broker
    worker: Worker
    worker_metrics_url: str

    def broker_scrape(self) -> str:
        return self.broker.get("/metrics").text

    def worker_scrape(self) -> str:
        return httpx.get(self.worker_metrics_url, timeout=10).text


def start_live_farm(tmp: Path) -> LiveFarm:
    """Broker + null worker, environment as deployed; the caller stops them."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in DEPLOY_ENV.items():
            env.setenv(key, value)
        broker = start_broker(tmp)
        worker = start_worker(tmp, broker.zmq, engine="null")
        try:
            broker.wait_workers(1, timeout=60)
            url = worker.metrics_url()
        except BaseException:
            worker.process.stop()
            broker.process.stop()
            raise
    return LiveFarm(broker, worker, url)


@pytest.fixture(scope="module")
def live_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFarm]:
    farm = start_live_farm(tmp_path_factory.mktemp("farm"))
    yield farm
    farm.worker.process.stop()
    farm.broker.process.stop()


# ---- PromQL and dashboards ----------------------------------------------------------------------


PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (not functions, labels, keywords or numbers)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    grouping = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    text = re.sub(grouping, " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group(0) not in PROMQL_KEYWORDS:
            names.add(match.group(0))
    return names


def dashboard_exprs(dashboard: dict[str, object]) -> list[tuple[str, str]]:
    """(panel title / refId, expr) of every query in a dashboard."""
    found = []
    panels = dashboard.get("panels", [])
    assert isinstance(panels, list)
    for panel in panels:
        for target in panel.get("targets") or []:
            found.append((f"{panel['title']} / {target['refId']}", target["expr"]))
    return found


def concrete(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, as Prometheus would get it."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$__interval", "30s")
        .replace('=~"$namespace"', '=~".*"')
    )


# ---- tests of the helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le) (rate(a_bucket{ns=~"x"}[5m]))', {"a_bucket"}),
        (
            "histogram_quantile(0.95, sum by (instance, le) (rate(b_bucket[1m]))) > 1e3",
            {"b_bucket"},
        ),
        ("sum(x) / ignoring(kind) group_left(code) sum(y) or vector(0)", {"x", "y"}),
        ("max by (namespace) (up) < 1 and on(job) z offset 5m", {"up", "z"}),
        ('absent(m{a="sum(b)"})', {"m"}),
        ("min_over_time((max(q))[15m:1m])", {"q"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_families_series_names_and_sums() -> None:
    text = (
        "# HELP h x\n# TYPE h histogram\n"
        'h_bucket{le="1.0"} 1\nh_bucket{le="+Inf"} 3\nh_sum 2.5\nh_count 3\n'
        "# TYPE c_total counter\n"
        '# TYPE g gauge\ng{a="x",b="say \\"hi\\""} 2\ng{a="x",b="y"} 4\ng{a="z"} 8\n'
    )
    assert families(text) == {"h": "histogram", "c_total": "counter", "g": "gauge"}
    assert series_names(text) == {"h", "h_bucket", "h_sum", "h_count", "c_total", "g"}
    assert metric_sum(text, "h_bucket", {"le": "+Inf"}) == 3
    assert metric_sum(text, "g", {"a": "x"}) == 6 and metric_sum(text, "g") == 14
    assert metric_sum(text, "g", {"b": 'say "hi"'}) == 2
    assert metric_sum(text, "c_total") == 0  # no series before the first increment
