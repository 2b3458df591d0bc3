"""``python -m app.cluster``: start (or join) a Ray cluster and serve the app through Ray Serve.

Without ``--address`` / ``ATLAS_RAY_ADDRESS`` / ``RAY_ADDRESS`` a local single-node cluster is started with
every Ray process on loopback (``--node-ip-address 127.0.0.1``). Serve's HTTP proxy binds ``--host``
(127.0.0.1 by default) and ``--port``. Ctrl-C (or SIGTERM) deletes the application and disconnects.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
import time

import ray
from ray import serve

from app.cluster.loopback import init_ray
from app.cluster.serve_app import build_app
from app.settings import get_settings

log = logging.getLogger("atlas.cluster")


def main(argv: list[str] | None = None) -> None:
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
    init_ray(address)  # None: a new local instance, every process on 127.0.0.1
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_app(settings), name=settings.cluster.serve_app_name, route_prefix="/", blocking=False)
    log.info(
        "Attention Atlas on Ray Serve: http://%s:%d (healthy after %.1f s; %d vision, %d text replicas)",
        args.host,
        args.port,
        time.perf_counter() - t0,
        settings.cluster.vision_replicas,
        settings.cluster.text_replicas,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete(settings.cluster.serve_app_name)
        with contextlib.suppress(ValueError):  # ValueError: never created (one ingress replica)
            ray.kill(ray.get_actor(f"{settings.cluster.serve_app_name}-analyses", namespace="atlas"))
        if not address:
            serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
