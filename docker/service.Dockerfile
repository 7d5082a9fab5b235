# syntax=docker/dockerfile:1
# One image for every CPU service: scheduler, generator (openai back-end), dispatcher, aggregator,
# and a judge with the offline back-ends only (judge.Dockerfile has them all: torch, transformers,
# sentence-transformers). The service is the first argument:  docker run IMAGE judge serve --port 50051
# Build from the repository root:
#   docker build -f docker/service.Dockerfile -t trustwatch:dev .
# Pin PYTHON_IMAGE by digest in release builds (python:3.11-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtual environment with the dependencies and the project, copied whole below --------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, so this layer is rebuilt only when requirements/base.txt changes.
COPY requirements/base.txt requirements/base.txt
RUN pip install --no-cache-dir -r requirements/base.txt
COPY pyproject.toml ./
COPY services/ services/
RUN pip install --no-cache-dir --no-deps .

# -- runtime: no compiler, no pip cache, no source tree; a fixed non-root uid for runAsNonRoot -----
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 trustwatch \
 && useradd --system --uid 10001 --gid trustwatch --home-dir /home/trustwatch --create-home \
        --shell /usr/sbin/nologin trustwatch
COPY --from=build /opt/venv /opt/venv
# The root filesystem is read-only in Kubernetes: the cache lives under /tmp (an emptyDir there).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRUSTWATCH_CACHE_DIR=/tmp/trustwatch-cache
WORKDIR /home/trustwatch
USER 10001:10001
# 9100 aggregator (metrics + report API), 9101 generator, 9102 judge, 9103 dispatcher metrics;
# 50051 the evaluator gRPC service.
EXPOSE 9100 9101 9102 9103 50051
ENTRYPOINT ["trustwatch"]
CMD ["--help"]
