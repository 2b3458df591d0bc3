"""``make load``: start the server, run the locust scenario headless against it, print what happened.

    python bench/load/run.py [--users 200] [--spawn-rate 10] [--time 3m] [--port 0] [--out bench/out/load]
                             [--scenario class|fairness|both] [--fair-time 45s]

Defaults come from LOAD_USERS, LOAD_SPAWN_RATE, LOAD_TIME (e.g. ``LOAD_USERS=50 LOAD_TIME=45s make load``).
The server is ``uvicorn app.main:create_app --factory`` on 127.0.0.1 with the real CPU defaults (DINOv2
ViT-S/14, MiniLM, the date model; ATLAS_* variables in the environment apply as for ``make run``). All
traffic stays on 127.0.0.1; the run is bounded in users and time and stops by itself. The server trusts
127.0.0.1 as a proxy (``ATLAS_TRUSTED_PROXIES``): the load generator stands for a reverse proxy in front
of the class, and each simulated user sends its own client address in ``X-Forwarded-For``.

Scenarios: ``class`` is the class of students (bench/load/locustfile.py); ``fairness``
(bench/load/fairness.py) runs a flooding client (16 connections, one address, no think time) beside a polite
one and prints the share of the polite client's uploads that were served (goal >= 80 %); ``both`` (the
default) runs the class, then the fairness scenario, against the same server.

While locust runs, this script samples the server's RSS from /proc/<pid>/status every 0.2 s (VmRSS; VmHWM
is the kernel's own peak) and polls /api/health in its own thread to measure its latency. It prints:
requests/s, p50 and p95 per route (of the answers served; 503s are counted apart), the number of 503s, the
number of other 5xx and failed connections (must be 0), the server's peak RSS and /api/health p99. Exit
status 1 when any non-503 5xx (or a connection failure) happened, or when nothing was served.

Here the load generator shares the server's cores (on a real deployment it runs elsewhere), so locust runs
at ``--client-nice`` (default 10): it then measures the server instead of starving it. The health probe runs
at normal priority, like a load balancer's check from another machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
FAIRNESS = Path(__file__).resolve().parent / "fairness.py"
POLITE_UPLOAD = "polite: /api/vision/analyze [upload]"  # bench/load/fairness.py
FAIR_GOAL = 0.8
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def proc_status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(-(-q * len(sorted_values) // 100)))  # ceil(q/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Sampler(threading.Thread):
    """Peak RSS of the server every 0.2 s."""

    def __init__(self, pid: int, period_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.period_s = pid, period_s
        self.peak_rss_kb = 0
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss = proc_status_kb(self.pid, "VmRSS")
            if rss is not None:
                self.peak_rss_kb = max(self.peak_rss_kb, rss)
                self.samples += 1
            self.stop.wait(self.period_s)


class HealthProbe(threading.Thread):
    """GET /api/health in a loop on its own connection; latencies in ms (a failure counts as its time)."""

    def __init__(self, port: int, period_s: float = 0.1, timeout_s: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.port, self.period_s, self.timeout_s = port, period_s, timeout_s
        self.latencies_ms: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout_s)
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/api/health")
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    self.failures += 1
            except (OSError, http.client.HTTPException):
                self.failures += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout_s)
            self.latencies_ms.append((time.perf_counter() - t0) * 1000)
            self.stop.wait(self.period_s)
        conn.close()


def wait_healthy(port: int, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} while starting (see its log)")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/api/health")
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server did not answer /api/health within {timeout_s:.0f} s")


def summarise(report: dict, rss_kb: int, hwm_kb: int | None, health: HealthProbe) -> tuple[str, int]:
    """The printed table and the number of non-503 server errors (incl. failed connections)."""
    tally: dict[str, dict[str, int]] = report["tally"]
    served: dict[str, list[float]] = report["served_ms"]
    duration = max(report["duration_s"], 1e-9)
    answered = ("2xx", "3xx", "4xx", "503", "5xx_other", "conn_error")
    total = sum(sum(t.get(k, 0) for k in answered) for t in tally.values())
    n503 = sum(t.get("503", 0) for t in tally.values())
    n5xx = sum(t.get("5xx_other", 0) + t.get("conn_error", 0) for t in tally.values())
    n_stale = sum(report.get("stale_connection_retries", {}).values())
    lines = [
        f"duration {duration:.0f} s, {total} requests, {total / duration:.1f} requests/s "
        f"({sum(len(v) for v in served.values()) / duration:.1f}/s served, 503s excluded)",
        "",
        f"{'route':52} {'n':>6} {'2xx':>6} {'4xx':>5} {'503':>6} {'5xx':>4} {'p50 ms':>8} {'p95 ms':>8}",
    ]
    for name in sorted(tally):
        t, ms = tally[name], served.get(name, [])
        n = sum(t.get(k, 0) for k in answered)
        errors = t.get("5xx_other", 0) + t.get("conn_error", 0)
        lines.append(
            f"{name:52} {n:6d} {t.get('2xx', 0):6d} {t.get('4xx', 0):5d} {t.get('503', 0):6d} {errors:4d} "
            f"{percentile(ms, 50):8.0f} {percentile(ms, 95):8.0f}"
        )
    h = sorted(health.latencies_ms)
    peak_mb = max(rss_kb, hwm_kb or 0) / 1024
    lines += [
        "",
        f"503 (busy, retried after Retry-After): {n503}",
        f"other 5xx and failed connections: {n5xx}",
        f"stale keep-alive connections (request resent, as browsers do): {n_stale}",
        f"server peak RSS: {peak_mb:.0f} MB "
        f"(VmHWM {(hwm_kb or 0) / 1024:.0f} MB, sampled max {rss_kb / 1024:.0f} MB)",
        f"/api/health: p50 {percentile(h, 50):.1f} ms, p99 {percentile(h, 99):.1f} ms, max "
        f"{(h[-1] if h else float('nan')):.1f} ms over {len(h)} probes ({health.failures} failed)",
    ]
    return "\n".join(lines), n5xx


def polite_share(report: dict) -> tuple[int, int]:
    """(served, attempts) of the polite client's uploads in a fairness report; retries count as attempts."""
    t = report["tally"].get(POLITE_UPLOAD, {})
    attempts = sum(t.get(k, 0) for k in ("2xx", "4xx", "503", "5xx_other", "conn_error"))
    return t.get("2xx", 0), attempts


def fairness_lines(report: dict) -> tuple[str, bool]:
    """The fairness summary and whether the polite client's share met the goal."""
    served, attempts = polite_share(report)
    share = served / attempts if attempts else 0.0
    flood = {k: v for k, v in report["tally"].items() if k.startswith("flood:")}
    f_ok = sum(t.get("2xx", 0) for t in flood.values())
    f_503 = sum(t.get("503", 0) for t in flood.values())
    text = (
        f"fairness: the polite client's uploads served {served} of {attempts} attempts ({100 * share:.0f} %, "
        f"goal >= {100 * FAIR_GOAL:.0f} %) while the flooding client got {f_ok} answers and {f_503} 503s"
    )
    return text, attempts > 0 and share >= FAIR_GOAL


def run_locust(py: str, port: int, args: argparse.Namespace, out: Path, scenario: str) -> dict | None:
    """One headless locust run; its report (None when locust wrote none)."""
    fair = scenario == "fairness"
    report_path = out / f"report-{scenario}.json"
    report_path.unlink(missing_ok=True)
    users = ["Flooder", "Polite"] if fair else ["Student"]
    n_users = int(os.environ.get("FLOOD_USERS", "16")) + 1 if fair else args.users
    locust_cmd = [
        "nice", "-n", str(args.client_nice), py, "-m", "locust", "-f", str(FAIRNESS if fair else LOCUSTFILE),
        "--headless", "-u", str(n_users), "-r", str(n_users if fair else args.spawn_rate),
        "-t", args.fair_time if fair else args.time, "--host", f"http://{HOST}:{port}",
        "--csv", str(out / f"locust-{scenario}"), "--only-summary", "--stop-timeout", "15",
        "--loglevel", "WARNING", *users,
    ]  # fmt: skip
    print("running:", " ".join(locust_cmd[5:]), f"(at nice {args.client_nice})", flush=True)
    env = {**os.environ, "LOAD_REPORT": str(report_path)}
    with open(out / f"locust-{scenario}.log", "w") as log:
        locust = subprocess.run(locust_cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if not report_path.exists():
        print(f"locust wrote no report (exit {locust.returncode}); see {out / f'locust-{scenario}.log'}")
        return None
    return json.loads(report_path.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=int(os.environ.get("LOAD_USERS", "200")))
    ap.add_argument("--spawn-rate", type=float, default=float(os.environ.get("LOAD_SPAWN_RATE", "10")))
    ap.add_argument("--time", default=os.environ.get("LOAD_TIME", "3m"), help="locust run time, e.g. 45s, 3m")
    ap.add_argument("--client-nice", type=int, default=10, help="nice value of the load generator (0..19)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("LOAD_PORT", "0")), help="0: a free port")
    ap.add_argument("--out", default=os.environ.get("LOAD_OUT", str(ROOT / "bench" / "out" / "load")))
    ap.add_argument("--startup-timeout", type=float, default=600.0)
    ap.add_argument("--scenario", choices=("class", "fairness", "both"), default="both")
    ap.add_argument("--fair-time", default=os.environ.get("LOAD_FAIR_TIME", "45s"), help="fairness run time")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    py = sys.executable
    server_cmd = [
        py,
        "-m",
        "uvicorn",
        "app.main:create_app",
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-proxy-headers",  # the app reads X-Forwarded-For itself, from ATLAS_TRUSTED_PROXIES only
    ]
    server_env = {**os.environ, "ATLAS_TRUSTED_PROXIES": "127.0.0.1"}  # locust plays the reverse proxy
    server_log = open(out / "server.log", "w")  # noqa: SIM115 - closed in finally
    print(f"starting the server on {HOST}:{port} (log: {out / 'server.log'})", flush=True)
    server = subprocess.Popen(
        server_cmd, cwd=ROOT, env=server_env, stdout=server_log, stderr=subprocess.STDOUT
    )
    sampler = Sampler(server.pid)
    health = HealthProbe(port)
    try:
        t0 = time.monotonic()
        wait_healthy(port, server, args.startup_timeout)
        print(f"server ready in {time.monotonic() - t0:.0f} s", flush=True)
        sampler.start()
        health.start()
        scenarios = ("class", "fairness") if args.scenario == "both" else (args.scenario,)
        reports = {name: run_locust(py, port, args, out, name) for name in scenarios}
        hwm_kb = proc_status_kb(server.pid, "VmHWM")
    finally:
        sampler.stop.set()
        health.stop.set()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        server_log.close()
    health.join(timeout=35)

    if any(r is None for r in reports.values()):
        return 1
    failed = False
    if "class" in reports:
        table, n5xx = summarise(reports["class"], sampler.peak_rss_kb, hwm_kb, health)
        print(f"\n{args.users} users, spawn rate {args.spawn_rate}/s, {args.time}\n{table}")
        (out / "summary.txt").write_text(table + "\n")
        served = sum(len(v) for v in reports["class"]["served_ms"].values())
        if n5xx or not served:
            print("FAILED: server errors other than 503" if n5xx else "FAILED: nothing was served")
            failed = True
    if "fairness" in reports:
        text, met = fairness_lines(reports["fairness"])
        _, n5xx = summarise(reports["fairness"], sampler.peak_rss_kb, hwm_kb, health)
        print(f"\n{text}")
        (out / "fairness.txt").write_text(text + "\n")
        if n5xx or not met:
            print("FAILED: " + ("server errors other than 503" if n5xx else "the polite client was starved"))
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
