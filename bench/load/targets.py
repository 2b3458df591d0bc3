"""What ``make load`` runs against (``LOAD_TARGET=run|run-cluster|both``), and how it watches it.

- ``run``: ``uvicorn app.main:create_app --factory``, as ``make run`` serves it.
- ``run-cluster``: ``python -m app.cluster``, as ``make run-cluster`` serves it: a new local Ray instance
  on loopback (any ``RAY_ADDRESS`` / ``ATLAS_RAY_ADDRESS`` is removed from its environment), Serve's proxy
  on 127.0.0.1 and a free port. Stopped with SIGINT (the command removes the app, Serve and Ray), then any
  process of its tree still alive after the grace period is killed, by pid, and reported.

Memory is the **whole process tree** (the server, and for the cluster the Ray processes under the driver:
GCS, raylet, agents, Serve controller, proxy, replicas, idle workers): the sum of each process's RSS, and
the sum of PSS (``/proc/<pid>/smaps_rollup``) that counts shared pages (torch's libraries, Ray's object
store) once. CPU is attributed to the tree's processes by role (:func:`role`) from their cumulative CPU
times (psutil, user + system) between the start and the end of the load.
"""

from __future__ import annotations

import subprocess
import threading
import time

import psutil

HOST = "127.0.0.1"
TARGETS = ("run", "run-cluster")
ROLES = (  # (role, substring of the command line), first match wins; Ray sets workers' titles to ray::...
    ("Serve VisionModels replica", "VisionModels"),
    ("Serve TextModels replica", "TextModels"),
    ("Serve Ingress replica (the app)", "Ingress"),
    ("Serve proxy", "ProxyActor"),
    ("Serve controller", "ServeController"),
    ("gcs_server", "gcs_server"),
    ("raylet", "raylet"),
    ("Ray agents (dashboard/runtime-env/log monitor)", "agent"),
    ("Ray agents (dashboard/runtime-env/log monitor)", "log_monitor"),
    ("Ray agents (dashboard/runtime-env/log monitor)", "dashboard"),
    ("other Ray workers and tasks", "ray::"),
)


def targets_of(value: str) -> tuple[str, ...]:
    """``run`` / ``run-cluster`` / ``both`` -> the targets to run, in order (ValueError otherwise)."""
    if value == "both":
        return TARGETS
    if value in TARGETS:
        return (value,)
    raise ValueError(f"LOAD_TARGET must be run, run-cluster or both, not {value!r}")


def server_command(target: str, py: str, port: int, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment that serve the app for ``target`` on 127.0.0.1:``port``."""
    env = {**env, "ATLAS_TRUSTED_PROXIES": "127.0.0.1"}  # locust plays the reverse proxy
    if target == "run":
        cmd = [py, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", HOST, "--port", str(port),
               "--no-proxy-headers"]  # fmt: skip  # the app reads X-Forwarded-For from ATLAS_TRUSTED_PROXIES
        return cmd, env
    if target == "run-cluster":
        for name in ("RAY_ADDRESS", "ATLAS_RAY_ADDRESS"):  # always a new local instance, never a shared one
            env.pop(name, None)
        env.setdefault("MALLOC_ARENA_MAX", "2")  # as `make run-cluster`
        return [py, "-m", "app.cluster", "--host", HOST, "--port", str(port)], env
    raise ValueError(f"unknown target {target!r}")


def role(cmdline: str, is_root: bool) -> str:
    """The role of one process of the served tree, from its command line (the root is the server)."""
    if is_root:
        return "server / Ray driver"
    for name, needle in ROLES:
        if needle in cmdline:
            return name
    return "other processes"


def tree(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants that are alive now."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def pss_kb(pid: int) -> int | None:
    """Proportional set size of one process (kB, /proc/<pid>/smaps_rollup); None when unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def tree_memory_kb(pid: int, with_pss: bool = True) -> tuple[int, int, int]:
    """(sum of RSS, sum of PSS, number of processes) over ``pid``'s tree, in kB (PSS 0 unless ``with_pss``)."""
    rss = pss = n = 0
    for p in tree(pid):
        try:
            rss += p.memory_info().rss // 1024
        except psutil.Error:
            continue
        pss += (pss_kb(p.pid) or 0) if with_pss else 0
        n += 1
    return rss, pss, n


class TreeSampler(threading.Thread):
    """Peak tree RSS every ``period_s`` and PSS every ``pss_every`` samples; CPU seconds per role between
    :meth:`mark` and the end.

    PSS is read rarely because reading it perturbs what is measured: the kernel walks every page table of
    the process for ``smaps_rollup`` while holding its memory-map lock, so the process's own ``mmap`` and
    ``munmap`` calls (NumPy's large arrays) wait meanwhile. Over the cluster's 11 processes, every 0.5 s,
    that took 16 % of a core at normal priority (py-spy on this runner, 2026-12-06). RSS comes from
    ``statm`` (counters, no walk)."""

    def __init__(self, pid: int, period_s: float = 0.5, pss_every: int = 10) -> None:
        super().__init__(daemon=True)
        self.pid, self.period_s, self.pss_every = pid, period_s, pss_every
        self.peak_rss_kb = self.peak_pss_kb = self.max_processes = self.samples = 0
        self.cpu_start: dict[int, float] = {}
        self.cpu_last: dict[int, tuple[str, float]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.period_s)

    def sample(self) -> None:
        rss, pss, n = tree_memory_kb(self.pid, with_pss=self.samples % self.pss_every == 0)
        if n:
            self.peak_rss_kb, self.peak_pss_kb = max(self.peak_rss_kb, rss), max(self.peak_pss_kb, pss)
            self.max_processes, self.samples = max(self.max_processes, n), self.samples + 1
        for p in tree(self.pid):
            try:
                t = p.cpu_times()
                self.cpu_last[p.pid] = (role(" ".join(p.cmdline()), p.pid == self.pid), t.user + t.system)
            except psutil.Error:
                continue

    def mark(self) -> None:
        """Start of the measured window: CPU seconds before it are not counted."""
        self.sample()
        self.cpu_start = {pid: s for pid, (_, s) in self.cpu_last.items()}

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds per role since :meth:`mark` (processes that exited count up to their last sample)."""
        out: dict[str, float] = {}
        for pid, (name, s) in self.cpu_last.items():
            out[name] = out.get(name, 0.0) + s - self.cpu_start.get(pid, 0.0)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def cpu_lines(cpu: dict[str, float], wall_s: float, cores: int) -> str:
    """CPU seconds per role, as a share of the tree's total and of the machine's cores over the window."""
    total = sum(cpu.values()) or 1e-9
    lines = [f"{'process (role)':48} {'CPU s':>8} {'of tree':>8} {'of machine':>11}"]
    for name, s in cpu.items():
        lines.append(f"{name:48} {s:8.1f} {100 * s / total:7.1f}% {100 * s / (wall_s * cores):10.1f}%")
    lines.append(f"{'total':48} {total:8.1f} {100.0:7.1f}% {100 * total / (wall_s * cores):10.1f}%")
    return "\n".join(lines)


def stop_tree(server: subprocess.Popen, grace_s: float = 60.0) -> list[str]:
    """SIGINT the server, wait for it, then kill (by pid) whatever of its tree is still alive; the
    descriptions of the processes that had to be killed (empty: it stopped everything itself)."""
    before = tree(server.pid)
    server.send_signal(2)  # SIGINT: uvicorn and python -m app.cluster both stop cleanly on it
    try:
        server.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)
    deadline = time.monotonic() + 15  # Ray's processes exit a little after the driver
    left = [p for p in before[1:] if p.is_running()]
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    killed = []
    for p in left:
        try:
            killed.append(f"{p.pid} {' '.join(p.cmdline())[:80]}")
            p.kill()
        except psutil.Error:
            continue
    return killed


def ps_left(pids: set[int]) -> list[str]:
    """Lines of ``ps -e`` for any of ``pids`` still alive (the check that nothing we started is left).
    Zombies (state Z: exited, only their exit status waits for a parent that reaps, such as this container's
    PID 1 for orphans) hold no memory, CPU or socket and are not counted."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    return [" ".join(r) for r in rows if int(r[0]) in pids and not r[1].startswith("Z")]
