# syntax=docker/dockerfile:1
# The GPU generator: trustwatch on top of the official vLLM image (CUDA, PyTorch and vLLM built to
# match each other). Only `trustwatch generator --target vllm:/models/NAME` runs from this image.
# Build from the repository root:
#   docker build -f docker/vllm.Dockerfile -t trustwatch-vllm:dev .
# Keep VLLM_IMAGE's vLLM version within what services/trustwatch/generator supports; pin it by digest in
# release builds.
ARG VLLM_IMAGE=vllm/vllm-openai:v0.33.0
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# -- build: a wheel of the project only; vLLM and its stack come from the base image ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY requirements/base.txt requirements/base.txt
COPY services/ services/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# -- runtime ---------------------------------------------------------------------------------------
FROM ${VLLM_IMAGE}
COPY --from=build /wheels /wheels
COPY requirements/base.txt /tmp/requirements-base.txt
# Into the image's own Python, next to vllm; pip resolves base.txt against what vLLM already pins.
# The image's Python is the system one, hence PIP_BREAK_SYSTEM_PACKAGES (PEP 668).
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir -r /tmp/requirements-base.txt /wheels/*.whl \
 && rm -rf /wheels /tmp/requirements-base.txt \
 && groupadd --system --gid 10001 trustwatch \
 && useradd --system --uid 10001 --gid trustwatch --home-dir /home/trustwatch --create-home \
        --shell /usr/sbin/nologin trustwatch
# Offline at run time: weights come from a mounted volume (/models), never from a hub. The caches
# vLLM, Triton and Hugging Face write to live under /tmp (an emptyDir in Kubernetes).
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/hf \
    XDG_CACHE_HOME=/tmp/cache \
    TRITON_CACHE_DIR=/tmp/triton \
    VLLM_CACHE_ROOT=/tmp/vllm \
    TRUSTWATCH_CACHE_DIR=/tmp/trustwatch-cache \
    PYTHONUNBUFFERED=1
WORKDIR /home/trustwatch
USER 10001:10001
EXPOSE 9101
ENTRYPOINT ["trustwatch"]
CMD ["generator", "--help"]
