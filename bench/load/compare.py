"""The key numbers of one ``make load`` target, the side-by-side table of ``LOAD_TARGET=both``, and the
idle probe that splits one ``/api/vision/analyze`` into the forward and everything around it.

The probe runs before the load, on the idle server: one warm-up and then a few sequential uploads of distinct photos
at each resolution; for each it records the client's wall time and the response's ``forward_ms`` (the forward as
timed where it ran: in the compute queue locally, in the VisionModels replica on the cluster). Their
difference is what the server adds around the forward (decode, cache, views, JSON; on the cluster also the
handle call, the hop to the replica and back, and unpickling the analysis in the ingress).
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from dataclasses import dataclass

from payloads import distinct_jpeg, multipart

HOST = "127.0.0.1"


@dataclass(frozen=True)
class KeyNumbers:
    """One target's line in the side-by-side table."""

    target: str
    requests_per_s: float
    served_per_s: float
    n503: int
    other_5xx: int
    peak_rss_mb: float
    peak_pss_mb: float
    health_p50_ms: float
    health_p99_ms: float
    fairness: str


def ratio(a: float, b: float) -> float:
    """a / b (nan when b is 0)."""
    return a / b if b else float("nan")


def side_by_side(local: KeyNumbers, cluster: KeyNumbers) -> str:
    """The two targets' key numbers in columns, with the ratio cluster / local where it means something."""
    rows = [
        ("requests/s (all answers)", "requests_per_s", "{:.1f}", True),
        ("requests/s served (503s excluded)", "served_per_s", "{:.1f}", True),
        ("503s (busy, retried)", "n503", "{:d}", False),
        ("other 5xx + failed connections (must be 0)", "other_5xx", "{:d}", False),
        ("peak RSS of the process tree, MB (sum of RSS)", "peak_rss_mb", "{:.0f}", True),
        ("peak PSS of the process tree, MB", "peak_pss_mb", "{:.0f}", True),
        ("/api/health p50, ms", "health_p50_ms", "{:.1f}", True),
        ("/api/health p99, ms", "health_p99_ms", "{:.1f}", True),
    ]
    head = f"{'':48} {'run (local)':>14} {'run-cluster':>14} {'cluster/local':>14}"
    lines = [head, "-" * len(head)]
    for label, attr, fmt, with_ratio in rows:
        a, b = getattr(local, attr), getattr(cluster, attr)
        r = f"{ratio(b, a):.2f}x" if with_ratio else ""
        lines.append(f"{label:48} {fmt.format(a):>14} {fmt.format(b):>14} {r:>14}")
    lines += ["", f"fairness, run:         {local.fairness}", f"fairness, run-cluster: {cluster.fairness}"]
    return "\n".join(lines)


def probe_analyze(port: int, resolutions: tuple[int, ...] = (224, 448), n: int = 5) -> str:
    """Sequential uploads on the idle server: per resolution the median client ms, forward ms, and the rest."""
    lines = [
        f"{'idle probe: upload analyze':30} {'n':>3} {'client ms':>10} {'forward ms':>11} {'rest ms':>9}"
    ]
    lines[0] += "  (medians; rest = median of client - forward)"
    for res in resolutions:
        client, forward = [], []
        for i in range(n + 1):  # the first one warms up (the model at this resolution) and is not counted
            body, ctype = multipart(
                {"resolution": str(res)}, [("image", "p.jpg", distinct_jpeg(640), "image/jpeg")]
            )
            conn = http.client.HTTPConnection(HOST, port, timeout=120)
            t0 = time.perf_counter()
            conn.request("POST", "/api/vision/analyze", body, {"Content-Type": ctype})
            resp = conn.getresponse()
            data = resp.read()
            ms = (time.perf_counter() - t0) * 1000
            conn.close()
            if resp.status != 200 or i == 0:
                continue
            client.append(ms)
            forward.append(float(json.loads(data)["forward_ms"]))
        if client:
            c, f = statistics.median(client), statistics.median(forward)
            rest = statistics.median(a - b for a, b in zip(client, forward, strict=True))
            lines.append(f"{f'{res} px':30} {len(client):3d} {c:10.0f} {f:11.0f} {rest:9.0f}")
        else:
            lines.append(f"{f'{res} px':30}   0 (no 200 answer)")
    return "\n".join(lines)
