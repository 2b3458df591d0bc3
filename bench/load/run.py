"""``make load``: start the server, run the locust scenario headless against it, print what happened.

    python bench/load/run.py [--users 200] [--spawn-rate 10] [--time 3m] [--port 0] [--out bench/out/load]
                             [--scenario class|fairness|both] [--fair-time 45s] [--target run|run-cluster|both]
                             [--probe 3]

Defaults come from LOAD_USERS, LOAD_SPAWN_RATE, LOAD_TIME (e.g. ``LOAD_USERS=50 LOAD_TIME=45s make load``).
The server is ``uvicorn app.main:create_app --factory`` on 127.0.0.1 with the real CPU defaults (DINOv2
ViT-S/14, MiniLM, the date model; ATLAS_* variables in the environment apply as for ``make run``). All
traffic stays on 127.0.0.1; the run is bounded in users and time and stops by itself. The server trusts
127.0.0.1 as a proxy (``ATLAS_TRUSTED_PROXIES``): the load generator stands for a reverse proxy in front
of the class, and each simulated user sends its own client address in ``X-Forwarded-For``.

Targets (``LOAD_TARGET``, default ``run``): ``run`` serves the app as ``make run`` does; ``run-cluster`` as
``make run-cluster`` does (``python -m app.cluster``: a new local Ray instance on loopback, Serve's proxy on
127.0.0.1 and a free port); ``both`` runs the two one after the other, each with the same scenarios, and
prints them side by side with the ratio cluster / local (bench/load/compare.py). Each target's outputs go
to ``<out>/<target>/`` when both run. Before the load, ``--probe`` uploads per resolution (224, 448 px) are
timed on the idle server: client time vs the ``forward_ms`` the response reports. Memory is the peak of the
sum of RSS over the server's whole process tree (for the cluster: driver, GCS, raylet, agents, Serve
controller, proxy, replicas) every 0.5 s, with the sum of PSS beside it (every 5 s: reading it stalls the
processes it reads, see ``TreeSampler``). Every health probe's latency is written to
``<out>/health-probes.csv`` (seconds since the load started, ms). CPU seconds during the load are attributed to
the tree's processes by role (bench/load/targets.py). After the run the script stops everything it started
(SIGINT, then a kill by pid of whatever is left) and checks with ``ps`` that none of those processes remain.

Scenarios: ``class`` is the class of students (bench/load/locustfile.py); ``fairness``
(bench/load/fairness.py) runs a flooding client (16 connections, one address, no think time) beside a polite
one and prints the share of the polite client's uploads that were served (goal >= 80 %); ``both`` (the
default) runs the class, then the fairness scenario, against the same server.

While locust runs, this script samples the tree's memory every 0.5 s and polls /api/health in its own thread to measure its latency. It prints:
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
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # payloads, compare, targets (run as a script)
from compare import KeyNumbers, probe_analyze, side_by_side  # noqa: E402
from targets import (  # noqa: E402
    TreeSampler,
    cpu_lines,
    ps_left,
    server_command,
    stop_tree,
    targets_of,
    tree,
)

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


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(-(-q * len(sorted_values) // 100)))  # ceil(q/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


class HealthProbe(threading.Thread):
    """GET /api/health in a loop on its own connection; latencies in ms (a failure counts as its time)."""

    def __init__(self, port: int, period_s: float = 0.1, timeout_s: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.port, self.period_s, self.timeout_s = port, period_s, timeout_s
        self.latencies_ms: list[float] = []
        self.sent_at: list[float] = []  # time.monotonic() of each probe (health-probes.csv)
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout_s)
        while not self.stop.is_set():
            t0 = time.perf_counter()
            self.sent_at.append(time.monotonic())
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
        f"peak RSS of the server's process tree (sum of RSS, sampled every 0.5 s): {peak_mb:.0f} MB",
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
    reasons = {k[5:]: v for k, v in report["tally"].get(POLITE_UPLOAD, {}).items() if k.startswith("503: ")}
    if reasons:
        text += "; the polite client's 503s: " + "; ".join(
            f"{n} x {why!r}" for why, n in sorted(reasons.items())
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    ap.add_argument(
        "--target",
        type=targets_of,
        default=os.environ.get("LOAD_TARGET", "run"),
        help="run (make run), run-cluster (make run-cluster: Ray Serve, local Ray on loopback) or both",
    )
    ap.add_argument("--probe", type=int, default=int(os.environ.get("LOAD_PROBE", "3")),
                    help="uploads per resolution timed on the idle server before the load (0: none)")  # fmt: skip
    args = ap.parse_args(argv)
    if isinstance(args.target, str):  # the default is not passed through type=
        args.target = targets_of(args.target)
    return args


def write_probes(path: Path, health: HealthProbe, load_start: float | None) -> None:
    """Every health probe as ``seconds since the load started,ms``: when the slow ones came."""
    origin = load_start if load_start is not None else (health.sent_at[0] if health.sent_at else 0.0)
    rows = zip(health.sent_at, health.latencies_ms, strict=False)
    path.write_text("t_s,ms\n" + "".join(f"{t - origin:.3f},{ms:.2f}\n" for t, ms in rows))


def serve(
    target: str, args: argparse.Namespace, out: Path
) -> tuple[dict, TreeSampler, HealthProbe, float, str]:
    """Start ``target``, probe it idle, run the scenarios, stop it and everything under it.
    (reports by scenario, sampler, health probe, load wall seconds, notes)."""
    py = sys.executable
    port = args.port or free_port()
    cmd, env = server_command(target, py, port, dict(os.environ))
    server_log = open(out / "server.log", "w")  # noqa: SIM115 - closed in finally
    print(f"[{target}] starting {' '.join(cmd[1:])} (log: {out / 'server.log'})", flush=True)
    health = HealthProbe(port)
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT)
    sampler = TreeSampler(server.pid)
    notes, reports, wall = [], {}, 0.0
    t1: float | None = None  # when the load started
    try:
        t0 = time.monotonic()
        wait_healthy(port, server, args.startup_timeout)
        notes.append(f"ready (first 200 from /api/health) after {time.monotonic() - t0:.0f} s")
        print(f"[{target}] {notes[-1]}", flush=True)
        if args.probe:
            notes.append(probe_analyze(port, n=args.probe))
            print(notes[-1], flush=True)
        sampler.start()
        sampler.mark()
        health.start()
        t1 = time.monotonic()
        scenarios = ("class", "fairness") if args.scenario == "both" else (args.scenario,)
        reports = {name: run_locust(py, port, args, out, name) for name in scenarios}
        wall = time.monotonic() - t1
        sampler.sample()
    finally:
        sampler.stop.set()
        health.stop.set()
        pids = {p.pid for p in tree(server.pid)} | set(sampler.cpu_last)
        killed = stop_tree(server)
        server_log.close()
    health.join(timeout=35)
    write_probes(out / "health-probes.csv", health, t1)
    left = ps_left(pids)
    notes.append(
        f"stopped: {len(pids)} processes seen in the tree; killed after the grace period: {len(killed)}"
        f"{' ' + '; '.join(killed) if killed else ''}; left in ps afterwards: {len(left)}"
        f"{' ' + '; '.join(left) if left else ''}"
    )
    return reports, sampler, health, wall, "\n".join(notes)


def report_target(target: str, args: argparse.Namespace) -> tuple[bool, KeyNumbers | None]:
    """Run one target and print its tables; (failed, key numbers)."""
    out = Path(args.out) / target if len(args.target) > 1 else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reports, sampler, health, wall, notes = serve(target, args, out)
    rss_kb = sampler.peak_rss_kb
    cpu = cpu_lines(sampler.cpu_by_role(), wall, os.cpu_count() or 1)
    extra = (
        f"peak of the process tree: sum of RSS {rss_kb / 1024:.0f} MB, sum of PSS {sampler.peak_pss_kb / 1024:.0f}"
        f" MB (every {sampler.period_s * sampler.pss_every:.0f} s), up to {sampler.max_processes} processes ({sampler.samples} samples)\n"
        f"CPU during the load ({wall:.0f} s, {os.cpu_count()} cores):\n{cpu}\n{notes}"
    )
    print(f"\n[{target}]\n{extra}")
    if any(r is None for r in reports.values()):
        return True, None
    failed, fair, table = False, "not run", ""
    if "class" in reports:
        table, n5xx = summarise(reports["class"], rss_kb, None, health)
        print(f"\n[{target}] {args.users} users, spawn rate {args.spawn_rate}/s, {args.time}\n{table}")
        served = sum(len(v) for v in reports["class"]["served_ms"].values())
        if n5xx or not served:
            print("FAILED: server errors other than 503" if n5xx else "FAILED: nothing was served")
            failed = True
    if "fairness" in reports:
        fair, met = fairness_lines(reports["fairness"])
        _, n5xx = summarise(reports["fairness"], rss_kb, None, health)
        print(f"\n[{target}] {fair}")
        (out / "fairness.txt").write_text(fair + "\n")
        if n5xx or not met:
            print("FAILED: " + ("server errors other than 503" if n5xx else "the polite client was starved"))
            failed = True
    (out / "summary.txt").write_text(f"{table}\n\n{extra}\n")
    if "class" not in reports:
        return failed, None
    return failed, key_numbers(target, reports["class"], sampler, health, fair)


def key_numbers(
    target: str, report: dict, sampler: TreeSampler, health: HealthProbe, fair: str
) -> KeyNumbers:
    tally, duration = report["tally"], max(report["duration_s"], 1e-9)
    answered = ("2xx", "3xx", "4xx", "503", "5xx_other", "conn_error")
    h = sorted(health.latencies_ms)
    return KeyNumbers(
        target=target,
        requests_per_s=sum(sum(t.get(k, 0) for k in answered) for t in tally.values()) / duration,
        served_per_s=sum(len(v) for v in report["served_ms"].values()) / duration,
        n503=sum(t.get("503", 0) for t in tally.values()),
        other_5xx=sum(t.get("5xx_other", 0) + t.get("conn_error", 0) for t in tally.values()),
        peak_rss_mb=sampler.peak_rss_kb / 1024,
        peak_pss_mb=sampler.peak_pss_kb / 1024,
        health_p50_ms=percentile(h, 50),
        health_p99_ms=percentile(h, 99),
        fairness=fair,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, KeyNumbers | None] = {}
    failed = False
    for target in args.target:
        f, results[target] = report_target(target, args)
        failed = failed or f
    if len(args.target) == 2 and all(results.values()):
        table = side_by_side(results["run"], results["run-cluster"])  # type: ignore[arg-type]
        print(f"\nside by side ({args.users} users, {args.time} each, one after the other):\n{table}")
        (Path(args.out) / "side-by-side.txt").write_text(table + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
