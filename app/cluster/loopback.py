"""Connecting to Ray on loopback (our build and test machines keep every Ray process on 127.0.0.1).

Ray rewrites a bootstrap address of ``127.0.0.1`` / ``localhost`` to the machine's outward IP before it
connects, where a head started with ``--node-ip-address 127.0.0.1`` does not listen, so the connection
times out. For a loopback address :func:`init_ray` keeps the driver on loopback too (Ray's own switch for
single-machine clusters, ``ray_constants.ENABLE_RAY_CLUSTER``); any other address is passed on unchanged.
"""

from __future__ import annotations

from typing import Any

import ray
from ray._common.network_utils import is_localhost, parse_address
from ray._private import ray_constants


def init_ray(address: str | None = None, **kwargs: Any) -> None:
    """``ray.init``: a new local instance on 127.0.0.1 (``address`` None), or join ``address``."""
    if address is None:
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, **kwargs)
        return
    parsed = parse_address(address) if "://" not in address and address != "auto" else None
    if parsed is not None and is_localhost(parsed[0]):
        ray_constants.ENABLE_RAY_CLUSTER = False  # resolve "this node" to 127.0.0.1, not the outward IP
        kwargs.setdefault("_node_ip_address", "127.0.0.1")
    ray.init(address=address, **kwargs)
