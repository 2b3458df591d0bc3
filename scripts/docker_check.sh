#!/usr/bin/env bash
# `make docker-check`: build the Dockerfile with podman, run it with its port on 127.0.0.1 only, and check
# from outside the container: /api/health, a sample vision analysis and a text analysis; that it runs as a
# non-root user with one server process. Prints the build time, the image size and the time to healthy,
# then removes the container and the image it built (KEEP_IMAGE=1 keeps the image).
#
# Where podman is missing it is installed (apt, as root). Where the base image cannot be pulled (no
# registry reachable), a Debian bookworm base is built with debootstrap from the apt mirror and imported
# as localhost/bookworm:minbase (kept for the next run). See ../shared/containers.md for the recipe.
# Not part of `make test`: it needs several GB of disk and several minutes of CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/atlas:check}
NAME=atlas-check-$$
HOST_PORT=${HOST_PORT:-18765}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
LOCAL_BASE=localhost/bookworm:minbase
URL=http://127.0.0.1:$HOST_PORT
say() { printf '[docker-check %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# --- podman, and a runtime that works here ----------------------------------------------------------------
if ! command -v podman >/dev/null; then
    say "podman is missing: installing it (apt-get install podman runc)"
    [ "$(id -u)" = 0 ] || { say "not root: install podman and runc first"; exit 2; }
    apt-get update -qq && apt-get install -y -qq podman runc >/dev/null
fi
P=(podman)
# crun fails on hybrid cgroups ("cgroups in hybrid mode not supported"); runc works where it is installed
if command -v runc >/dev/null; then P+=(--runtime "$(command -v runc)"); fi
# the default ulimits exceed some sandboxes' own
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=1024:1024)

cleanup() {
    "${P[@]}" rm -f "$NAME" >/dev/null 2>&1 || true
    if [ "${KEEP_IMAGE:-0}" != 1 ]; then "${P[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# --- the base image -----------------------------------------------------------------------------------
if ! "${P[@]}" image exists "$BASE_IMAGE" && ! timeout 90 "${P[@]}" pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    say "cannot pull $BASE_IMAGE: using $LOCAL_BASE (Debian bookworm, debootstrap)"
    BASE_IMAGE=$LOCAL_BASE
    if ! "${P[@]}" image exists "$LOCAL_BASE"; then
        command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
        mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        rootfs=$(mktemp -d)
        debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >/dev/null
        tar -C "$rootfs" -c . | "${P[@]}" import - "$LOCAL_BASE" >/dev/null
        rm -rf "$rootfs"
    fi
fi

# --- build ----------------------------------------------------------------------------------------------
CA=()
for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -f "$bundle" ]; then
        CA=(-v "$bundle:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
        break
    fi
done
say "building $IMAGE from $BASE_IMAGE (torch from ${TORCH_INDEX_URL:-PyPI})"
t0=$(date +%s)
"${P[@]}" build -q --network host "${LIMITS[@]}" "${CA[@]}" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg TORCH_INDEX_URL="${TORCH_INDEX_URL:-}" \
    -t "$IMAGE" . >/dev/null
build_s=$(( $(date +%s) - t0 ))
size=$("${P[@]}" image inspect "$IMAGE" --format '{{.Size}}')
say "built in ${build_s} s; image size $(( size / 1000000 )) MB"

# --- run on 127.0.0.1 and check from outside --------------------------------------------------------------
t0=$(date +%s.%N)
"${P[@]}" run -d --name "$NAME" "${LIMITS[@]}" -p "127.0.0.1:$HOST_PORT:8000" "$IMAGE" >/dev/null
for _ in $(seq 1 900); do
    if curl -fsS -o /dev/null "$URL/api/health" 2>/dev/null; then break; fi
    if [ "$("${P[@]}" inspect -f '{{.State.Running}}' "$NAME")" != true ]; then
        "${P[@]}" logs "$NAME" | tail -20; say "FAIL: the container stopped"; exit 1
    fi
    sleep 0.2
done
healthy_s=$(echo "$(date +%s.%N) - $t0" | bc)
fail() { say "FAIL: $*"; "${P[@]}" logs "$NAME" 2>&1 | tail -20; exit 1; }
health=$(curl -fsS "$URL/api/health") || fail "never healthy"
say "healthy ${healthy_s} s after podman run: $health"

code=$(curl -sS -o /tmp/atlas-check-vision.json -w '%{http_code}' -F sample=coffee "$URL/api/vision/analyze")
[ "$code" = 200 ] || fail "vision analysis answered $code: $(head -c 300 /tmp/atlas-check-vision.json)"
say "vision analysis (sample 'coffee'): $code, $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("model", d["model"]["id"], "analysis_id", d["analysis_id"][:16])' /tmp/atlas-check-vision.json)"

code=$(curl -sS -o /tmp/atlas-check-text.json -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"text": "Attention is all you need."}' "$URL/api/text/analyze")
[ "$code" = 200 ] || fail "text analysis answered $code: $(head -c 300 /tmp/atlas-check-text.json)"
say "text analysis: $code, $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("model", d["model"]["id"], "analysis_id", d["analysis_id"][:16])' /tmp/atlas-check-text.json)"
rm -f /tmp/atlas-check-vision.json /tmp/atlas-check-text.json

uid=$("${P[@]}" exec "$NAME" id -u)
[ "$uid" != 0 ] || fail "the server runs as root"
servers=$("${P[@]}" exec "$NAME" sh -c 'for p in /proc/[0-9]*; do tr "\0" " " < "$p/cmdline" 2>/dev/null; echo; done' \
    | grep -c "app serve" || true)
[ "$servers" = 1 ] || fail "$servers server processes (want 1)"
published=$("${P[@]}" port "$NAME")
case "$published" in 8000/tcp\ -\>\ 127.0.0.1:*) ;; *) fail "port published as '$published'" ;; esac
say "user $("${P[@]}" exec "$NAME" id -un) (uid $uid), $servers server process, published $published"
say "OK: build ${build_s} s, image $(( size / 1000000 )) MB, healthy after ${healthy_s} s"
