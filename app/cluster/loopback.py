"""Which Ray cluster we run on, and keeping a local one closed (issue 17 §2).

- :func:`init_ray` with no address starts a **new** local Ray instance (``address="local"``: never the
  cluster that the last ``ray start`` on this machine recorded on disk) with every process on 127.0.0.1:
  Ray's single-machine switch (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, in the environment so that the
  GCS, raylet and agents started as child processes see it too) plus ``_node_ip_address="127.0.0.1"``,
  no dashboard. Ray 2.60 also turns on token authentication for a new local instance unless
  ``RAY_AUTH_MODE`` says otherwise. With an address it joins that cluster (a loopback address keeps the
  driver on loopback: Ray would otherwise rewrite 127.0.0.1 to the machine's outward address).
- :func:`keep_replica_server_on_node_ip`: Serve 2.60 starts each replica's inter-deployment gRPC server on
  ``[::]:0`` (every interface, hard-coded in ``ray.serve._private.replica``), whatever the node's address.
  Our deployments call this in their constructor, which Serve runs before it starts that server, so the
  server binds the node's own address instead (127.0.0.1 locally; the private interface given by
  ``--node-ip-address`` on a cluster).
- :func:`listeners`: the listening sockets of a set of processes (the cluster test and the entry point use
  it to check that nothing listens beyond loopback).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray
from ray._common.network_utils import build_address, is_localhost, parse_address
from ray._private import ray_constants

from app.server import is_loopback

if TYPE_CHECKING:
    import psutil

log = logging.getLogger("atlas.cluster")
LOOPBACK = "127.0.0.1"


def keep_ray_on_loopback() -> None:
    """Ray's single-machine mode for this process and the Ray processes it starts (set before they start)."""
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at import: resolve "this node" to 127.0.0.1


# Defaults for the Ray processes this process starts (an operator's own RAY_* values win).
# Serve's own start-up checks allow the HTTP proxy 5 s to answer "ready" (10 s for a health check); on a
# 2-core machine under load it misses that, Serve kills it, and `serve.start` fails: patient checks.
RAY_ENV_DEFAULTS = {
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60",
    # Under `make load` the raylet asked every worker and the driver for a full `gc.collect()` every 10 s
    # (its minimum interval; "Sending Python GC request" in raylet.out): 13-48 ms with the GIL held in the
    # driver that answers HTTP, up to 350 ms in the Serve controller (docs/cluster.md). Python's own
    # generational collector still runs; Ray's extra collections come at most every 2 minutes.
    "RAY_local_gc_min_interval_s": "120",
}


def ray_env_defaults() -> None:
    """Set :data:`RAY_ENV_DEFAULTS` in the environment unless already set (before Ray starts)."""
    for name, value in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


def auth_mode() -> str:
    """Ray's authentication mode for this process ("token" or "disabled")."""
    from ray._raylet import AuthenticationMode, get_authentication_mode

    return "token" if get_authentication_mode() == AuthenticationMode.TOKEN else "disabled"


START_ATTEMPTS = 3  # a new local instance whose raylet did not register in Ray's fixed 30 s is retried


def start_local(attempts: int = START_ATTEMPTS, **kwargs: Any) -> None:
    """``ray.init(address="local")``, retried when the node timed out during start-up. Ray 2.60 waits a
    fixed 30 s (not configurable) for the new raylet to register with the GCS; on a machine whose cores are
    all busy (a loaded CI runner) it can miss that, and a second start then succeeds. Other errors raise."""
    for attempt in range(1, attempts + 1):
        try:
            ray.init(address="local", **kwargs)
            return
        except Exception as e:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(e) or attempt == attempts:
                raise
            log.warning(
                "Ray's node timed out during start-up (attempt %d of %d); retrying", attempt, attempts
            )
            ray.shutdown()


def init_ray(address: str | None = None, **kwargs: Any) -> str:
    """``ray.init``: a new local instance on 127.0.0.1 (``address`` None or "local"), or join ``address``.

    Returns (and logs) a one-line description of the cluster joined."""
    ray_env_defaults()
    if address in (None, "local"):
        keep_ray_on_loopback()
        kwargs.setdefault("include_dashboard", False)
        start_local(_node_ip_address=LOOPBACK, **kwargs)
        where = "a new local Ray instance on 127.0.0.1"
    else:
        parsed = parse_address(address) if "://" not in address and address != "auto" else None
        if parsed is not None and is_localhost(parsed[0]):
            keep_ray_on_loopback()
            kwargs.setdefault("_node_ip_address", LOOPBACK)
        ray.init(address=address, **kwargs)
        where = f"the Ray cluster at {address}"
    description = describe_cluster(where)
    log.info("joined %s", description)
    return description


def describe_cluster(where: str) -> str:
    """``where`` with the connected cluster's GCS address, this node's address, node count, auth mode."""
    context = ray.get_runtime_context()
    return (
        f"{where} (GCS {context.gcs_address}, node {ray.util.get_node_ip_address()}, "
        f"{len(ray.nodes())} node(s), authentication {auth_mode()}, job {context.get_job_id()})"
    )


def keep_replica_server_on_node_ip() -> None:
    """In a Serve replica: bind its inter-deployment gRPC server to this node's address, not ``[::]``.

    Called from the deployments' constructors (Serve starts that server after the constructor returns).
    Idempotent; a no-op outside a Serve replica process's module layout."""
    import ray.serve._private.replica as replica

    if getattr(replica.add_port_to_grpc_server, "_atlas_node_ip", False):
        return
    add_port = replica.add_port_to_grpc_server
    node_ip = ray.util.get_node_ip_address()

    def on_node_ip(server: Any, address: str) -> int:
        if address.startswith("[::]:"):
            address = build_address(node_ip, int(address.rsplit(":", 1)[1]))
        return add_port(server, address)

    on_node_ip._atlas_node_ip = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = on_node_ip


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid}) on {build_address(self.ip, self.port)}"


def listeners(processes: list[psutil.Process]) -> list[Listener]:
    """Every TCP/UDP socket in LISTEN state (``net_connections(kind="inet")``) of ``processes``."""
    import psutil

    out = []
    for proc in processes:
        try:
            conns, name = proc.net_connections(kind="inet"), proc.name()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # exited meanwhile
        out += [
            Listener(proc.pid, name, c.laddr.ip, c.laddr.port)
            for c in conns
            if c.status == psutil.CONN_LISTEN
        ]
    return out


def local_ray_processes() -> list[psutil.Process]:
    """This driver and every process under it: a local instance's GCS, raylet, agents and workers."""
    import psutil

    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def exposed_listeners() -> list[Listener]:
    """Listeners of this driver's local Ray processes that are not on loopback (should be none)."""
    return [lsn for lsn in listeners(local_ray_processes()) if not is_loopback(lsn.ip)]
