"""The cheap pieces of ``make load`` (bench/load/run.py, targets.py, compare.py): the ``LOAD_TARGET`` switch,
the process-tree memory and CPU helpers, stopping a tree, and the side-by-side table. No load is run here."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

LOAD = Path(__file__).resolve().parents[2] / "bench" / "load"


def _load(name: str):
    if str(LOAD) not in sys.path:
        sys.path.insert(0, str(LOAD))
    spec = importlib.util.spec_from_file_location(f"load_{name}", LOAD / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


targets = _load("targets")
compare = _load("compare")

# a parent that starts a child; each holds ~40 MB of touched memory, then both sleep
TREE = """
import subprocess, sys, time
block = bytearray(40 * 1024 * 1024)
for i in range(0, len(block), 4096): block[i] = 1
if sys.argv[1] == "parent":
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], "child", ""])
print("ready", flush=True)
time.sleep(60)
"""


def _vmrss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.fixture
def process_tree():
    parent = subprocess.Popen([sys.executable, "-c", TREE, "parent", TREE], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    while len(targets.tree(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [p.pid for p in targets.tree(parent.pid)]
    while time.monotonic() < deadline and any(_vmrss_kb(pid) < 40 * 1024 for pid in pids):
        time.sleep(0.1)  # the child is still touching its block
    yield parent
    for pid in pids:  # only what this fixture started, by pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    parent.wait(timeout=10)


def test_target_switch_parses_run_cluster_both_and_refuses_others(monkeypatch):
    run = _load("run")
    monkeypatch.delenv("LOAD_TARGET", raising=False)
    assert run.parse_args([]).target == ("run",)
    monkeypatch.setenv("LOAD_TARGET", "both")
    assert run.parse_args([]).target == ("run", "run-cluster")
    assert run.parse_args(["--target", "run-cluster"]).target == ("run-cluster",)
    with pytest.raises(SystemExit):
        run.parse_args(["--target", "cluster"])
    with pytest.raises(ValueError):
        targets.targets_of("")


def test_cluster_command_is_local_ray_on_loopback():
    env = {"RAY_ADDRESS": "10.0.0.1:6379", "ATLAS_RAY_ADDRESS": "x", "PATH": "/bin"}
    cmd, out = targets.server_command("run-cluster", "py", 1234, env)
    assert cmd == ["py", "-m", "app.cluster", "--host", "127.0.0.1", "--port", "1234"]
    assert "RAY_ADDRESS" not in out and "ATLAS_RAY_ADDRESS" not in out and out["PATH"] == "/bin"
    assert out["ATLAS_TRUSTED_PROXIES"] == "127.0.0.1" and out["MALLOC_ARENA_MAX"] == "2"
    assert env["RAY_ADDRESS"] == "10.0.0.1:6379"  # the caller's environment is untouched
    cmd, out = targets.server_command("run", "py", 1234, env)
    assert cmd[:4] == ["py", "-m", "uvicorn", "app.main:create_app"] and "127.0.0.1" in cmd
    assert out["RAY_ADDRESS"] == "10.0.0.1:6379"


def test_tree_memory_sums_every_process_of_the_tree(process_tree):
    pids = [p.pid for p in targets.tree(process_tree.pid)]
    assert len(pids) == 2
    independent = sum(_vmrss_kb(pid) for pid in pids)  # the kernel's own per-process numbers
    rss, pss, n = targets.tree_memory_kb(process_tree.pid)
    assert n == 2
    assert rss >= 80 * 1024  # two touched 40 MB blocks
    assert abs(rss - independent) <= 0.02 * independent
    assert 80 * 1024 <= pss <= rss  # shared pages (the interpreter) are counted once in PSS


def test_sampler_reads_pss_only_every_nth_sample(process_tree, monkeypatch):
    """RSS at every sample, PSS (a page-table walk that stalls the process read) every ``pss_every``."""
    reads: list[int] = []
    real = targets.pss_kb
    monkeypatch.setattr(targets, "pss_kb", lambda pid: reads.append(pid) or real(pid))
    sampler = targets.TreeSampler(process_tree.pid, pss_every=3)
    for _ in range(7):
        sampler.sample()
    assert sampler.samples == 7 and len(reads) == 3 * 2  # samples 0, 3 and 6; two processes each
    assert 80 * 1024 <= sampler.peak_pss_kb <= sampler.peak_rss_kb
    assert targets.tree_memory_kb(process_tree.pid, with_pss=False)[1] == 0


def test_stop_tree_leaves_nothing_and_reports_what_it_killed(process_tree):
    pids = {p.pid for p in targets.tree(process_tree.pid)}
    killed = targets.stop_tree(process_tree, grace_s=10)
    # SIGINT ends the parent (KeyboardInterrupt); the orphaned child had to be killed, by its pid
    assert len(killed) == 1 and int(killed[0].split()[0]) in pids - {process_tree.pid}
    time.sleep(0.5)
    assert targets.ps_left(pids) == []
    assert targets.ps_left({os.getpid()})  # ps does see a live process


def test_roles_and_cpu_table():
    assert targets.role("anything", is_root=True) == "server / Ray driver"
    assert targets.role("ray::ServeReplica:atlas:VisionModels", False) == "Serve VisionModels replica"
    assert targets.role("ray::ServeReplica:atlas:Ingress", False).startswith("Serve Ingress")
    assert targets.role("/x/ray/core/src/ray/raylet/raylet --flags", False) == "raylet"
    assert targets.role("/x/gcs_server --port", False) == "gcs_server"
    assert targets.role("ray::IDLE", False) == "other Ray workers and tasks"
    assert targets.role("sleep 5", False) == "other processes"
    table = targets.cpu_lines({"raylet": 30.0, "gcs_server": 10.0}, wall_s=100.0, cores=2).splitlines()
    assert table[1].split()[1:] == ["30.0", "75.0%", "15.0%"]  # 30 of 40 CPU s; 30 of 200 core-seconds
    assert table[-1].split()[1:] == ["40.0", "100.0%", "20.0%"]


def test_side_by_side_prints_both_targets_and_the_ratio():
    def numbers(target, served, p99):
        return compare.KeyNumbers(
            target, served * 2, served, 10, 0, 3000.0, 2500.0, 3.0, p99, f"{target} fair"
        )

    table = compare.side_by_side(numbers("run", 125.7, 36.0), numbers("run-cluster", 56.6, 2500.0))
    served = next(line for line in table.splitlines() if line.startswith("requests/s served"))
    assert served.split()[-3:] == ["125.7", "56.6", f"{56.6 / 125.7:.2f}x"]
    p99 = next(line for line in table.splitlines() if line.startswith("/api/health p99"))
    assert p99.split()[-3:] == ["36.0", "2500.0", f"{2500 / 36:.2f}x"]
    assert "run-cluster fair" in table and "must be 0" in table
    assert compare.ratio(1.0, 0.0) != compare.ratio(1.0, 0.0)  # nan, not a ZeroDivisionError


def test_health_probes_are_written_with_their_time_since_the_load_started(tmp_path):
    run = _load("run")
    probe = run.HealthProbe(port=1)
    probe.sent_at, probe.latencies_ms = [100.0, 100.1, 130.5], [2.0, 61.25, 3.5]
    run.write_probes(tmp_path / "p.csv", probe, load_start=100.0)
    assert (tmp_path / "p.csv").read_text().splitlines() == [
        "t_s,ms",
        "0.000,2.00",
        "0.100,61.25",
        "30.500,3.50",
    ]
