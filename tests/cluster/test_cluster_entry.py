"""``python -m app.cluster`` joins only what it is told to and removes only what it started (issue 17 §2).

No Ray instance is started here: ``ray.init``, Serve and the cluster description are replaced by recorders.
The real local instance is checked end to end in tests/test_cluster_serve.py (every listener on loopback).
"""

from __future__ import annotations

import logging
import os

import pytest

ray = pytest.importorskip("ray")

from ray._private import ray_constants  # noqa: E402

import app.cluster.__main__ as entry  # noqa: E402
import app.cluster.loopback as loopback  # noqa: E402
from tests.conftest import tiny_settings  # noqa: E402


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    """Record ray.init / serve / ray calls of the entry point; restore Ray's loopback switch afterwards."""
    log: list[tuple] = []
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    monkeypatch.setenv(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, "1")
    monkeypatch.setenv("RAY_ADDRESS", "10.9.8.7:6379")  # a cluster "found" in the environment/on disk
    monkeypatch.setattr(loopback.ray, "init", lambda **kw: log.append(("ray.init", kw)))
    monkeypatch.setattr(loopback, "describe_cluster", lambda where: where)
    monkeypatch.setattr(entry, "exposed_listeners", lambda: [])
    monkeypatch.setattr(entry, "build_app", lambda settings: "app")
    monkeypatch.setattr(
        entry,
        "serve_http",
        lambda settings, host, port: log.append(("serve_http", host, port)) or (None, None),
    )
    for name in ("start", "run", "delete", "shutdown"):
        monkeypatch.setattr(entry.serve, name, lambda *a, _n=name, **kw: log.append((f"serve.{_n}", a, kw)))
    monkeypatch.setattr(entry.ray, "shutdown", lambda: log.append(("ray.shutdown",)))
    monkeypatch.setattr(entry.ray, "kill", lambda actor: log.append(("ray.kill", actor)))

    def get_actor(name, namespace=None):
        raise ValueError(name)

    monkeypatch.setattr(entry.ray, "get_actor", get_actor)
    return log


def test_no_address_starts_a_new_local_instance_on_loopback(calls, tmp_path, caplog) -> None:
    settings = tiny_settings(tmp_path, serve_app_name="atlas")
    with caplog.at_level(logging.INFO, logger="atlas.cluster"):
        started = entry.start(settings, "127.0.0.1", 8123, None)
    (name, kw) = calls[0]
    assert name == "ray.init" and kw["address"] == "local"  # never RAY_ADDRESS or the cluster on disk
    assert kw["_node_ip_address"] == "127.0.0.1" and kw["include_dashboard"] is False
    assert (
        os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] == "0" and not ray_constants.ENABLE_RAY_CLUSTER
    )
    assert started.local and "new local Ray instance on 127.0.0.1" in started.cluster
    assert any("joined a new local Ray instance" in r.getMessage() for r in caplog.records)
    # the driver front (default): no Serve HTTP proxy; our uvicorn on the given host and port
    assert ("serve.start", (), {"proxy_location": "Disabled"}) in calls
    assert ("serve_http", "127.0.0.1", 8123) in calls and started.front == "driver"
    calls.clear()
    entry.stop(started)  # ours: the app, Serve and Ray
    assert [c[0] for c in calls] == ["serve.delete", "serve.shutdown", "ray.shutdown"]


def test_given_address_deletes_only_our_application(calls, tmp_path) -> None:
    settings = tiny_settings(tmp_path, serve_app_name="atlas")
    started = entry.start(settings, "127.0.0.1", 8123, "10.1.2.3:6379")
    assert calls[0] == ("ray.init", {"address": "10.1.2.3:6379"}) and not started.local
    calls.clear()
    entry.stop(started)
    assert calls == [("serve.delete", ("atlas",), {}), ("ray.shutdown",)]  # no serve.shutdown


def test_given_address_never_replaces_a_running_application(calls, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(entry, "_running_apps", lambda: {"atlas", "someone-else"})
    with pytest.raises(entry.AlreadyRunning, match="already runs a Serve application named 'atlas'"):
        entry.start(tiny_settings(tmp_path, serve_app_name="atlas"), "127.0.0.1", 8123, "10.1.2.3:6379")
    names = [c[0] for c in calls]
    assert "serve.run" not in names and "serve.shutdown" not in names and names[-1] == "ray.shutdown"


def test_non_loopback_proxy_bind_warns(calls, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="atlas.cluster"):
        entry.start(tiny_settings(tmp_path), "0.0.0.0", 8123, None)
    assert any("The app's HTTP server binds '0.0.0.0'" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="atlas.cluster"):
        entry.start(tiny_settings(tmp_path, http_front="serve"), "0.0.0.0", 8123, None)
    assert any("Serve's HTTP proxy binds '0.0.0.0'" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="atlas.cluster"):
        entry.start(tiny_settings(tmp_path), "127.0.0.1", 8123, None)
    assert not [r for r in caplog.records if "beyond loopback" in r.getMessage()]


def test_exposed_listeners_are_logged(calls, tmp_path, monkeypatch, caplog) -> None:
    found = loopback.Listener(42, "raylet", "0.0.0.0", 6379)
    monkeypatch.setattr(entry, "exposed_listeners", lambda: [found])
    with caplog.at_level(logging.WARNING, logger="atlas.cluster"):
        entry.start(tiny_settings(tmp_path), "127.0.0.1", 8123, None)
    assert any("raylet (pid 42) on 0.0.0.0:6379" in r.getMessage() for r in caplog.records)


def test_listeners_of_a_process_and_loopback_filter() -> None:
    """listeners() against sockets this test opens itself: one on 127.0.0.1, one on every interface."""
    import socket

    import psutil

    with socket.socket() as lo, socket.socket() as anyif:
        lo.bind(("127.0.0.1", 0))
        lo.listen()
        anyif.bind(("0.0.0.0", 0))
        anyif.listen()
        found = {(lsn.ip, lsn.port) for lsn in loopback.listeners([psutil.Process()])}
        assert ("127.0.0.1", lo.getsockname()[1]) in found and ("0.0.0.0", anyif.getsockname()[1]) in found


def test_serve_start_up_checks_are_patient_unless_the_operator_set_them(monkeypatch) -> None:
    """Serve's 5 s proxy readiness check fails on a loaded 2-core machine: the Ray processes we start get 60 s,
    and a value the operator set is kept."""
    from app.cluster.loopback import RAY_ENV_DEFAULTS, ray_env_defaults

    monkeypatch.delenv("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", raising=False)
    monkeypatch.setenv("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "7")
    ray_env_defaults()
    assert (
        os.environ["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"]
        == RAY_ENV_DEFAULTS["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"]
    )
    assert os.environ["RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S"] == "7"
    assert os.environ["RAY_local_gc_min_interval_s"] == "120"  # noqa: SIM112 (Ray reads this exact name)


def test_serve_front_starts_serves_proxy_on_the_given_host(calls, tmp_path) -> None:
    """``ATLAS_HTTP_FRONT=serve`` (or several ingress replicas): Serve's proxy on host:port, no uvicorn."""
    for settings in (
        tiny_settings(tmp_path, serve_app_name="atlas", http_front="serve"),
        tiny_settings(tmp_path, serve_app_name="atlas", ingress_replicas=2),
    ):
        calls.clear()
        started = entry.start(settings, "127.0.0.1", 8123, None)
        assert ("serve.start", (), {"http_options": {"host": "127.0.0.1", "port": 8123}}) in calls
        assert not any(c[0] == "serve_http" for c in calls) and started.front == "serve"


def test_a_local_start_that_timed_out_is_retried_and_other_errors_are_not(monkeypatch, caplog) -> None:
    """Ray waits a fixed 30 s for a new raylet to register; on a saturated machine the start is retried."""
    tries: list[dict] = []
    shutdowns: list[int] = []

    def init(**kw):
        tries.append(kw)
        if len(tries) < 3:
            raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(loopback.ray, "init", init)
    monkeypatch.setattr(loopback.ray, "shutdown", lambda: shutdowns.append(1))
    with caplog.at_level(logging.WARNING, logger="atlas.cluster"):
        loopback.start_local(num_cpus=1)
    assert [t["address"] for t in tries] == ["local"] * 3 and len(shutdowns) == 2
    assert "attempt 1 of 3" in caplog.text

    tries.clear()
    monkeypatch.setattr(loopback.ray, "init", lambda **kw: tries.append(kw) or (_ for _ in ()).throw(
        RuntimeError("port in use")))  # fmt: skip
    with pytest.raises(RuntimeError, match="port in use"):
        loopback.start_local()
    assert len(tries) == 1  # not a start-up timeout: raised at once

    def always_late(**kw):
        raise Exception("The current node timed out during startup.")

    monkeypatch.setattr(loopback.ray, "init", always_late)
    with pytest.raises(Exception, match="timed out during startup"):
        loopback.start_local(attempts=2)
