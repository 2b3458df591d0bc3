"""A class of students on one Attention Atlas server (locust; run by bench/load/run.py, or ``make load``).

Each simulated user behaves like a person on the pages, with think time between clicks:

- vision: analyses of the bundled samples and uploads of distinct photos (random crops and tints of the
  scikit-image samples, encoded as JPEG in memory, so no two uploads share a content hash), then patch
  queries and rollout changes on the returned analysis id;
- distance: 448 px analyses and their attention-distance view;
- text: analyses up to ~500 MiniLM tokens (and the date model), then overview, layer and head views;
- figures: /api/figures/positional and /api/figures/scaling with random parameters, /api/vit-embeddings/*;
- image-set jobs: POST /api/distance/jobs with the samples or a small zip upload, then polls until done.

Every user has its own client address, sent as ``X-Forwarded-For`` (bench/load/run.py starts the server
with ``ATLAS_TRUSTED_PROXIES=127.0.0.1``: the load generator plays a reverse proxy in front of 200
people), so per-client quotas and executor shares apply per user, as they would in a classroom.
bench/load/fairness.py adds a flooding client and a polite client side by side.

A 503 is admission control, not an error: the client waits ``Retry-After`` seconds and retries (at most
``LOAD_RETRIES`` times), as the page does. Routes with ids are grouped under one name
(``/api/vision/analysis/[id]/attention``). Every answer is tallied by route and status class; at the end
the tallies (with latency percentiles of the served answers) go to ``$LOAD_REPORT`` as JSON.
Any 5xx other than 503, or a failed connection, is marked as a locust failure.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import defaultdict
from urllib.parse import urlencode

import gevent
from geventhttpclient.response import HTTPConnectionClosed
from locust import FastHttpUser, between, events, task
from payloads import distinct_jpeg, multipart, next_number, small_zip, text_of_tokens  # noqa: F401

RETRIES = int(os.environ.get("LOAD_RETRIES", "3"))
MAX_RETRY_WAIT_S = float(os.environ.get("LOAD_MAX_RETRY_WAIT_S", "10"))
REPORT = os.environ.get("LOAD_REPORT", "")
MAX_JOB_POLLS = 60

DATES = ("Friday, March 18th, 2022", "3/18/22", "18 March 2022", "the 1st of May 1999", "July 4, 1776")


def _stale_connection(resp) -> bool:
    """A connection that was closed or reset before any response byte (not a timeout, not a bad answer)."""
    error = getattr(resp, "error", None)
    if error is None or isinstance(error, TimeoutError | gevent.Timeout):
        return False
    return isinstance(error, ConnectionError | HTTPConnectionClosed) or "closed" in str(error).lower()


# --- tallies --------------------------------------------------------------------------------------------
TALLY: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
SERVED_MS: dict[str, list[float]] = defaultdict(list)
STALE_RETRIES: dict[str, int] = defaultdict(int)  # resent after a closed keep-alive connection
STARTED = time.monotonic()


def status_class(status: int) -> str:
    if status == 503:
        return "503"
    if status == 0:
        return "conn_error"
    if status >= 500:
        return "5xx_other"
    return f"{status // 100}xx"


def refusal_reason(response) -> str:
    """A 503's ``detail`` with its numbers blanked ("the model is busy (N requests waiting or running)")."""
    try:
        detail = str(response.json().get("detail", ""))
    except (ValueError, AttributeError):
        detail = (getattr(response, "text", "") or "")[:120]
    return re.sub(r"\d+", "N", detail) or "(no detail)"


@events.request.add_listener
def _tally(request_type, name, response_time, response_length, response=None, exception=None, **_kw) -> None:
    status = getattr(response, "status_code", 0) or 0
    cls = status_class(status)
    if status == 0 and exception is None:
        cls = "stale_connection"  # marked success by Student.call: resent at once on a new connection
    TALLY[name][cls] += 1
    TALLY[name][f"status_{status}"] += 1
    if status == 503 and name.startswith("polite:"):  # which refusal met the polite client (run.py prints it)
        TALLY[name][f"503: {refusal_reason(response)}"] += 1
    if cls in ("2xx", "3xx", "4xx"):
        SERVED_MS[name].append(float(response_time))


@events.test_start.add_listener
def _started(**_kw) -> None:
    global STARTED
    STARTED = time.monotonic()


@events.quitting.add_listener
def _write_report(**_kw) -> None:
    if not REPORT:
        return
    served = {name: sorted(ms) for name, ms in SERVED_MS.items()}
    with open(REPORT, "w") as f:
        report = {
            "duration_s": time.monotonic() - STARTED,
            "tally": TALLY,
            "served_ms": served,
            "stale_connection_retries": STALE_RETRIES,
        }
        json.dump(report, f)


# --- the user -------------------------------------------------------------------------------------------
class Student(FastHttpUser):
    """One person clicking around the app; ``wait_time`` is the think time between actions."""

    wait_time = between(1.0, 4.0)
    connection_timeout = 30.0
    concurrency = 1  # one connection per user, like one browser tab doing one thing at a time
    network_timeout = 300.0

    address: str | None = None  # the client address the "proxy" forwards; None: a new one per user

    def on_start(self) -> None:
        if self.address is None:
            n = next_number()
            self.address = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        samples = self.call("GET", "/api/vision/samples", name="/api/vision/samples")
        self.samples = [s["name"] for s in samples["samples"]] if samples else ["astronaut", "chelsea"]
        self.vision: list[dict] = []  # analyses this user made (id + grid)
        self.texts: list[dict] = []

    # one request, honouring 503 + Retry-After like the page
    def call(
        self,
        method: str,
        path: str,
        name: str,
        expect_json: bool = True,
        params: dict | None = None,
        form: dict[str, str] | None = None,
        files: list[tuple[str, str, bytes, str]] | None = None,
        json: dict | None = None,
        retries: int = RETRIES,
    ) -> dict | None:
        kwargs: dict = {"headers": {"X-Forwarded-For": self.address or "10.255.255.255"}}
        if params:
            path = f"{path}?{urlencode(params)}"
        if form is not None or files:
            body, content_type = multipart(form or {}, files or [])
            kwargs["data"] = body
            kwargs["headers"]["Content-Type"] = content_type
        elif json is not None:
            kwargs["json"] = json
        stale_left = 3
        attempt = 0
        while attempt <= retries:
            attempt += 1
            with self.client.request(method, path, name=name, catch_response=True, **kwargs) as resp:
                status = resp.status_code or 0
                if status == 503:
                    resp.success()  # admission control: counted separately, never a failure
                    if attempt > retries:
                        return None
                    try:
                        headers = resp.headers or {}
                        wait = float(headers.get("Retry-After") or headers.get("retry-after") or 2)
                    except ValueError:
                        wait = 2.0
                elif status == 0 and stale_left > 0 and _stale_connection(resp):
                    # The server closed the kept-alive connection (idle timeout, or after an early answer) as
                    # this request went out, before any answer: browsers resend such a request on a new
                    # connection, and so do we (a few times).
                    resp.success()
                    stale_left -= 1
                    STALE_RETRIES[name] += 1
                    attempt -= 1  # not a 503 retry
                    continue
                elif status >= 500 or status == 0:
                    error = getattr(resp, "error", None)
                    resp.failure(f"{status}: {(resp.text or '')[:200] if status else repr(error)}")
                    return None
                else:
                    resp.success()
                    if status >= 400 or not expect_json:
                        return None if status >= 400 else {}
                    try:
                        return resp.json()
                    except ValueError:
                        return None
            gevent.sleep(min(wait, MAX_RETRY_WAIT_S) * random.uniform(1.0, 1.5))
        return None

    # --- vision ---------------------------------------------------------------------------------------
    def _explore(self, analysis: dict, clicks: int) -> None:
        aid, grid = analysis["analysis_id"], analysis["grid"]
        layers, heads = analysis["model"]["num_layers"], analysis["model"]["num_heads"]
        for _ in range(clicks):
            params = {
                "layer": random.randrange(layers),
                "query": random.randrange(grid["rows"] * grid["cols"]),
            }
            if random.random() < 0.5:
                params["head"] = random.randrange(heads)
            self.call(
                "GET",
                f"/api/vision/analysis/{aid}/attention",
                "/api/vision/analysis/[id]/attention",
                params=params,
            )
            self.wait_a_little()
        options = {
            "head_fusion": random.choice(["mean", "max", "min"]),
            "discard_ratio": random.choice([0.0, 0.5, 0.9]),
        }
        self.call(
            "GET", f"/api/vision/analysis/{aid}/rollout", "/api/vision/analysis/[id]/rollout", params=options
        )
        self.call(
            "GET",
            f"/api/vision/analysis/{aid}/image.png",
            "/api/vision/analysis/[id]/image.png",
            expect_json=False,
        )

    def wait_a_little(self) -> None:
        gevent.sleep(random.uniform(0.2, 1.0))

    def _analyse(self, what: str, clicks: tuple[int, int], **request) -> None:
        """POST /api/vision/analyze (``what``: sample or upload), then explore the analysis with a few clicks."""
        a = self.call("POST", "/api/vision/analyze", f"/api/vision/analyze [{what}]", **request)
        if a:
            self.vision.append(a)
            self._explore(a, clicks=random.randint(*clicks))

    @task(4)
    def sample_analysis(self) -> None:
        self._analyse("sample", (2, 5), form={"sample": random.choice(self.samples)})

    @task(3)
    def upload_analysis(self) -> None:
        self._analyse("upload", (1, 4), files=[("image", "photo.jpg", distinct_jpeg(), "image/jpeg")])

    @task(1)
    def distance_448(self) -> None:
        if random.random() < 0.5:
            kwargs = {"form": {"sample": random.choice(self.samples), "resolution": "448"}}
        else:
            kwargs = {
                "form": {"resolution": "448"},
                "files": [("image", "p.jpg", distinct_jpeg(640), "image/jpeg")],
            }
        a = self.call("POST", "/api/vision/analyze", "/api/vision/analyze [448]", **kwargs)
        if not a:
            return
        for _ in range(random.randint(1, 3)):
            params = {
                "renormalize": random.choice(["true", "false"]),
                "unit": random.choice(["pixels", "patches", "diagonal"]),
            }
            aid = a["analysis_id"]
            self.call("GET", f"/api/distance/analysis/{aid}", "/api/distance/analysis/[id]", params=params)
            self.wait_a_little()

    # --- text -----------------------------------------------------------------------------------------
    @task(3)
    def text_analysis(self) -> None:
        if random.random() < 0.2:
            body = {"text": random.choice(DATES), "model": "dates-seq2seq"}
        else:
            body = {"text": text_of_tokens(random.choice([12, 40, 120, 250, 400, 490]))}
        body.update(hide_special=random.random() < 0.3, merge_words=random.random() < 0.3)
        t = self.call("POST", "/api/text/analyze", "/api/text/analyze", json=body)
        if not t:
            return
        aid = t["analysis_id"]
        blocks = t.get("blocks") or []
        for _ in range(random.randint(1, 4)):
            if not blocks:
                break
            b = random.choice(blocks)
            kind, layer = b["kind"], random.randrange(b["layers"])
            view = random.random()
            if view < 0.3:
                self.call(
                    "GET",
                    f"/api/text/analysis/{aid}",
                    "/api/text/analysis/[id]",
                    params={"kind": kind, "layer": layer, "hide_special": random.choice(["true", "false"])},
                )
            elif view < 0.65:
                params = {"kind": kind, "layer": layer, "dtype": random.choice(["u1", "f4"])}
                self.call(
                    "GET", f"/api/text/analysis/{aid}/layer", "/api/text/analysis/[id]/layer", params=params
                )
            else:
                params = {"kind": kind, "layer": layer}
                if random.random() < 0.7:
                    params["head"] = random.randrange(b["heads"])
                self.call(
                    "GET", f"/api/text/analysis/{aid}/head", "/api/text/analysis/[id]/head", params=params
                )
            self.wait_a_little()

    # --- figures --------------------------------------------------------------------------------------
    @task(3)
    def figures(self) -> None:
        choice = random.random()
        if choice < 0.35:
            params = {
                "length": random.choice([64, 128, 256, 512, 1024, 2048]),
                "d_model": random.choice([64, 128, 256, 512]),
                "k": random.randint(1, 64),
                "far": random.randint(1000, 1_000_000),
            }
            self.call("GET", "/api/figures/positional", "/api/figures/positional", params=params)
        elif choice < 0.7:
            params = {
                "d_k": random.randint(1, 1024),
                "n_keys": random.choice([16, 32, 64, 128]),
                "n_samples": random.choice([256, 512]),
                "seed": random.randint(0, 2**31 - 1),
                "distribution": random.choice(["normal", "rademacher", "uniform"]),
            }
            self.call("GET", "/api/figures/scaling", "/api/figures/scaling", params=params)
        elif choice < 0.85:
            params = {"stride": random.choice([1, 2, 4]), "dtype": random.choice(["u1", "f4"])}
            self.call(
                "GET",
                "/api/vit-embeddings/position-similarity",
                "/api/vit-embeddings/position-similarity",
                params=params,
            )
        else:
            params = {"n_components": random.randint(1, 28)}
            self.call(
                "GET", "/api/vit-embeddings/patch-filters", "/api/vit-embeddings/patch-filters", params=params
            )

    # --- image-set jobs -------------------------------------------------------------------------------
    @task(1)
    def image_set_job(self) -> None:
        if random.random() < 0.5:
            form = {"source": "samples", "renormalize": random.choice(["true", "false"])}
            job = self.call("POST", "/api/distance/jobs", "/api/distance/jobs [samples]", form=form)
        else:
            files = [("files", "photos.zip", small_zip(random.randint(2, 4)), "application/zip")]
            form = {"source": "upload", "batch_size": "4"}
            job = self.call("POST", "/api/distance/jobs", "/api/distance/jobs [zip]", form=form, files=files)
        if not job:
            return
        job_id = job["job_id"]
        for _ in range(MAX_JOB_POLLS):
            if job is None or job.get("status") in ("done", "failed", "cancelled"):
                return
            gevent.sleep(random.uniform(1.0, 2.0))
            if random.random() < 0.02:
                job = self.call(
                    "POST", f"/api/distance/jobs/{job_id}/cancel", "/api/distance/jobs/[id]/cancel"
                )
            else:
                job = self.call("GET", f"/api/distance/jobs/{job_id}", "/api/distance/jobs/[id]")
