"""``python -m app.cluster``: serve the app through Ray Serve, on a new local Ray instance or a given cluster.

Without ``--address`` / ``ATLAS_RAY_ADDRESS`` / ``RAY_ADDRESS`` a **new** local Ray instance is started
(never a cluster found on disk) with every Ray process on 127.0.0.1, no dashboard, token authentication
(Ray 2.60's default for a new local instance); any listener of it found beyond loopback is logged as a
warning. The log says which cluster was joined.

Who answers HTTP on ``--host`` (127.0.0.1 by default; anything else logs a warning) and ``--port``
(``ATLAS_HTTP_FRONT``, docs/cluster.md):

- ``driver`` (the default): uvicorn in this process runs the app, with the same limits as ``make run``
  (:func:`app.server.uvicorn_options`); Serve runs only the model deployments, without its HTTP proxy.
- ``serve``: Serve's HTTP proxy and an Ingress deployment run the app (chosen whatever the setting when
  ``ATLAS_INGRESS_REPLICAS`` > 1, since several ingress replicas need Serve's proxy to spread requests).

On Ctrl-C / SIGTERM it removes only what it started: our Serve application (and its analyses index)
always; Serve and Ray themselves only on the local instance it started. On a given cluster an application
of the same name that is already running is never replaced: the command refuses to start.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ray
import uvicorn
from ray import serve

from app.cluster.loopback import exposed_listeners, init_ray
from app.cluster.serve_app import build_app, driver_app
from app.server import uvicorn_options, warn_if_exposed
from app.settings import Settings, get_settings

log = logging.getLogger("atlas.cluster")


class AlreadyRunning(RuntimeError):
    """The given cluster already runs a Serve application of our name (someone else's, or a stale one)."""


@dataclass(frozen=True)
class Started:
    """What :func:`start` started, so that :func:`stop` removes exactly that."""

    app_name: str
    local: bool  # a new local Ray instance (Serve and Ray are ours to shut down)
    cluster: str  # the description init_ray logged
    front: str = "serve"  # who answers HTTP: "driver" (our uvicorn, below) or "serve" (Serve's proxy)
    server: uvicorn.Server | None = field(default=None, compare=False)
    thread: threading.Thread | None = field(default=None, compare=False)


def http_front(settings: Settings) -> str:
    """``settings.cluster.http_front``, except ``serve`` whenever there are several ingress replicas."""
    return "serve" if settings.cluster.ingress_replicas > 1 else settings.cluster.http_front


def start(settings: Settings, host: str, port: int, address: str | None, **ray_options: Any) -> Started:
    """Join (or start) the cluster, then deploy the app; raises :class:`AlreadyRunning` on a name clash.
    ``ray_options`` go to ``ray.init`` (the tests: ``num_cpus``, ``log_to_driver``)."""
    local = address in (None, "local")
    cluster = init_ray(None if local else address, **ray_options)
    try:
        if local:
            for lsn in exposed_listeners():
                log.warning("a Ray process listens beyond loopback: %s", lsn)
        elif settings.cluster.serve_app_name in _running_apps():
            raise AlreadyRunning(
                f"the cluster at {address} already runs a Serve application named "
                f"{settings.cluster.serve_app_name!r}; stop it, or pick another ATLAS_SERVE_APP_NAME"
            )
        front = http_front(settings)
        name = settings.cluster.serve_app_name
        if front == "serve":
            warn_if_exposed(host, "Serve's HTTP proxy", log)
            serve.start(http_options={"host": host, "port": port})
            serve.run(build_app(settings), name=name, route_prefix="/", blocking=False)
            return Started(name, local, cluster)
        warn_if_exposed(host, "The app's HTTP server", log)
        serve.start(proxy_location="Disabled")  # no HTTP proxy actor: our uvicorn is the front
        serve.run(build_app(settings), name=name, route_prefix=None, blocking=False)
        server, thread = serve_http(settings, host, port)
        return Started(name, local, cluster, "driver", server, thread)
    except BaseException:
        if local:
            with contextlib.suppress(Exception):
                serve.shutdown()
        ray.shutdown()
        raise


START_TIMEOUT_S = 120.0  # the app's lifespan loads CPU copies of the default models


def serve_http(settings: Settings, host: str, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """uvicorn with the app (:func:`driver_app`) on a thread of this process; returns once it listens
    (``RuntimeError`` if it stopped first: a port in use, a failed start-up, or no start in
    :data:`START_TIMEOUT_S`)."""
    config = uvicorn.Config(driver_app(settings), host=host, port=port, log_level="warning",
                            **uvicorn_options(settings))  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="atlas-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the app's HTTP server did not start on {host}:{port}")
        thread.join(0.05)
    return server, thread


def _running_apps() -> set[str]:
    """Serve applications on the connected cluster (none when Serve is not running there)."""
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return set()
    return set(serve.status().applications)


def stop(started: Started) -> None:
    """Remove what :func:`start` started: our HTTP server and application always; Serve and Ray only if
    they are ours."""
    if started.server is not None:
        started.server.should_exit = True
        if started.thread is not None:
            started.thread.join(30)
    try:
        serve.delete(started.app_name)
        with contextlib.suppress(ValueError):  # ValueError: never created (one ingress replica)
            ray.kill(ray.get_actor(f"{started.app_name}-analyses", namespace="atlas"))
        if started.local:
            serve.shutdown()
    finally:
        ray.shutdown()  # on a given cluster: only disconnects this driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1", help="where Serve's HTTP proxy listens")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--address", default=None, help="an existing cluster (default: start a local one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    settings = get_settings().replace(**{"backend": "ray"})
    address = args.address or settings.cluster.ray_address or os.environ.get("RAY_ADDRESS") or None
    t0 = time.perf_counter()
    try:
        started = start(settings, args.host, args.port, address)
    except AlreadyRunning as e:
        print(f"python -m app.cluster: error: {e}", file=sys.stderr)
        return 2
    log.info(
        "Attention Atlas on Ray Serve: http://%s:%d (HTTP front: %s) on %s (healthy after %.1f s; "
        "%d vision, %d text replicas)",
        args.host,
        args.port,
        started.front,
        started.cluster,
        time.perf_counter() - t0,
        settings.cluster.vision_replicas,
        settings.cluster.text_replicas,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
