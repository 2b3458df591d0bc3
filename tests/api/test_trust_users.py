"""Issue 17, "users are kept apart": forged proxy headers, per-client shares of the executors, quantised
options, pixel-bounded dataset batches, job subscriptions and duplicate zip members."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from app.compute import BoundedExecutor, Busy, CpuPool
from app.context import client_id
from app.main import create_app
from app.services import distance as distance_service
from tests.conftest import tiny_settings
from tests.factories import photo_bytes as photo_png
from tests.factories import zip_of
from tests.services.test_distance_jobs import held_jobs, upload, wait

# ----------------------------------------------------------------------------------------------------------
# Proxy headers


def test_forged_forwarded_for_does_not_multiply_the_job_quota(tmp_path, live_server, monkeypatch) -> None:
    """uvicorn as `make run`/bench start it (proxy headers on, trusting 127.0.0.1): nine forged
    X-Forwarded-For values from one socket still count as one client."""
    settings = tiny_settings(tmp_path, preload=False, max_upload_mb=4.0)
    base = live_server(settings)
    gate = held_jobs(monkeypatch)
    accepted = []
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            for i in range(9):
                r = http.post(
                    "/api/distance/jobs",
                    data={"source": "upload"},
                    files=[("files", (f"{i}.png", photo_png(i), "image/png"))],
                    headers={"X-Forwarded-For": f"10.9.8.{i}", "X-Forwarded-Proto": "https"},
                )
                assert r.status_code in (202, 503), r.text
                accepted.append(r.status_code == 202)
    finally:
        gate.set()
    assert sum(accepted) == settings.limits.jobs_per_client


def test_trusted_proxy_forwarded_for_names_the_client(tmp_path, monkeypatch) -> None:
    """Behind a trusted proxy (TestClient's peer is "testclient") each forwarded address is its own client."""
    settings = tiny_settings(tmp_path, preload=False, max_upload_mb=4.0, trusted_proxies=["testclient"])
    gate = held_jobs(monkeypatch)
    try:
        with TestClient(create_app(settings)) as c:
            codes = []
            for i in range(4):
                r = c.post(
                    "/api/distance/jobs",
                    data={"source": "upload"},
                    files=[("files", (f"{i}.png", photo_png(i), "image/png"))],
                    headers={"X-Forwarded-For": f"1.2.3.4, 10.0.0.{i}"},
                )
                codes.append(r.status_code)
            assert codes == [202, 202, 202, 202]
    finally:
        gate.set()


def test_untrusted_peer_cannot_set_the_scheme(tmp_path) -> None:
    seen: dict[str, str] = {}
    for trusted in ([], ["testclient"]):
        app = create_app(tiny_settings(tmp_path, preload=False, trusted_proxies=trusted))

        @app.get("/api/test-whoami")
        def whoami(request: __import__("fastapi").Request) -> dict:
            return {"scheme": request.url.scheme, "client": client_id.get()}

        with TestClient(app) as c:
            body = c.get(
                "/api/test-whoami", headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
            ).json()
        seen[str(bool(trusted))] = body
    assert seen["False"] == {"scheme": "http", "client": "testclient"}
    assert seen["True"] == {"scheme": "https", "client": "6.6.6.6"}


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "want"),
    [
        ("10.0.0.9", [], [], ("10.0.0.9", False)),  # no header: the peer
        ("10.0.0.9", ["6.6.6.6"], [], ("10.0.0.9", False)),  # the client's own invention
        ("6.6.6.6", ["6.6.6.6"], [], ("127.0.0.1", False)),  # uvicorn rewrote a loopback peer
        ("6.6.6.6", ["6.6.6.6"], ["127.0.0.1"], ("6.6.6.6", True)),  # ... and loopback is trusted
        ("10.1.1.1", ["6.6.6.6", "7.7.7.7", "10.1.1.2"], ["10.1.0.0/16"], ("7.7.7.7", True)),
        ("10.1.1.1", ["10.1.1.2"], ["10.1.0.0/16"], ("10.1.1.2", True)),  # all trusted: the first
        ("::1", ["2001:db8::5"], ["::1"], ("2001:db8::5", True)),
    ],
)
def test_client_from(peer, forwarded, trusted, want) -> None:
    from app.middleware import TrustedProxies, client_from

    assert client_from(peer, forwarded, TrustedProxies(trusted)) == want


# ----------------------------------------------------------------------------------------------------------
# A fair share of the executors


def test_executor_caps_in_flight_work_per_owner() -> None:
    ex = BoundedExecutor(max_pending=8, workers=1, max_per_owner=2)
    gate = threading.Event()
    try:
        held = [ex.submit(gate.wait, 5, owner="flood", key=f"k{i}") for i in range(2)]
        with pytest.raises(Busy) as e:
            ex.submit(gate.wait, 5, owner="flood")
        assert "per client" in str(e.value)
        assert ex.submit(gate.wait, 5, owner="flood", key="k0") is held[0]  # merged: takes no share
        polite = ex.submit(lambda: "served", owner="polite")  # another client is admitted
        assert ex.pending == 3
        # jobs without an owner (worker threads) are never capped per client
        anonymous = [ex.submit(lambda: None) for _ in range(3)]
        gate.set()
        assert polite.result(5) == "served" and all(h.result(5) for h in held)
        for f in anonymous:
            f.result(5)
        assert ex.submit(lambda: 1, owner="flood").result(5) == 1  # the share frees as work finishes
    finally:
        gate.set()
        ex.shutdown()


def test_owner_defaults_to_the_request_client() -> None:
    pool = CpuPool(max_pending=8, workers=1, max_per_owner=1)
    gate = threading.Event()
    token = client_id.set("10.0.0.1")
    try:
        pool.submit(gate.wait, 5)
        with pytest.raises(Busy):
            pool.submit(gate.wait, 5)
        client_id.set("10.0.0.2")
        pool.submit(gate.wait, 5)
    finally:
        client_id.reset(token)
        gate.set()
        pool.shutdown()


def test_a_flooding_client_gets_503_while_another_is_served(tmp_path, monkeypatch) -> None:
    settings = tiny_settings(
        tmp_path, trusted_proxies=["testclient"], client_cpu_inflight=2, cpu_pool_size=8, cpu_workers=1
    )
    from app.services import vision as vision_service

    gate = threading.Event()
    real = vision_service.rollout_map
    monkeypatch.setattr(vision_service, "rollout_map", lambda *a: gate.wait(20) and real(*a))
    flood, polite = {"X-Forwarded-For": "10.0.0.66"}, {"X-Forwarded-For": "10.0.0.7"}
    with TestClient(create_app(settings)) as c:
        aid = c.post("/api/vision/analyze", data={"sample": "coffee"}).json()["analysis_id"]
        url = f"/api/vision/analysis/{aid}/rollout"
        with ThreadPoolExecutor(8) as pool:
            futures = [
                pool.submit(c.get, url, params={"head_fusion": "max", "discard_ratio": d}, headers=flood)
                for d in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
            ]
            deadline = time.monotonic() + 10
            while sum(f.done() for f in futures) < 4:  # two admitted and held, four refused at once
                assert time.monotonic() < deadline
                time.sleep(0.01)
            refused = [f.result() for f in futures if f.done()]
            assert all(r.status_code == 503 and "per client" in r.json()["detail"] for r in refused)
            mine = pool.submit(
                c.get, url, params={"head_fusion": "min", "discard_ratio": 0.5}, headers=polite
            )
            time.sleep(0.2)
            gate.set()
            assert mine.result().status_code == 200
            assert sum(f.result().status_code == 200 for f in futures) == 2


def test_uploads_over_the_client_share_are_refused_before_the_body_is_read(tmp_path, monkeypatch) -> None:
    gate = held_jobs(monkeypatch)
    settings = tiny_settings(tmp_path, preload=False, max_upload_mb=4.0)
    try:
        with TestClient(create_app(settings)) as c:
            for i in range(settings.limits.jobs_per_client):
                assert upload(c, [(f"{i}.png", photo_png(i))]).status_code == 202
            read: list[int] = []

            def body():
                read.append(1)
                yield b"--x\r\n"
                read.append(2)
                yield b'Content-Disposition: form-data; name="source"\r\n\r\nupload\r\n--x--\r\n'

            r = c.post(
                "/api/distance/jobs",
                content=body(),
                headers={"Content-Type": "multipart/form-data; boundary=x"},
            )
            assert r.status_code == 503 and "per client" in r.json()["detail"]
            assert len(read) <= 1  # answered before the body was read
    finally:
        gate.set()


# ----------------------------------------------------------------------------------------------------------
# Quantised options, bounded batches


def test_discard_ratio_is_quantised_to_the_slider_step(client, monkeypatch) -> None:
    from app.services import vision as vision_service

    calls: list[float] = []
    real = vision_service.rollout_map
    monkeypatch.setattr(vision_service, "rollout_map", lambda a, f, d: calls.append(d) or real(a, f, d))
    aid = client.post("/api/vision/analyze", data={"sample": "coffee"}).json()["analysis_id"]
    seen = set()
    for d in (0.1, 0.1000001, 0.0999, 0.11, 0.124):
        r = client.get(f"/api/vision/analysis/{aid}/rollout", params={"discard_ratio": d})
        assert r.status_code == 200
        seen.add(r.json()["rollout_options"]["discard_ratio"])
    assert seen == {0.1} and calls == [0.1]
    r = client.get(f"/api/vision/analysis/{aid}/rollout", params={"discard_ratio": 0.99})
    assert r.json()["rollout_options"]["discard_ratio"] == 0.95
    form = client.post("/api/vision/analyze", data={"sample": "coffee", "discard_ratio": "0.126"})
    assert form.json()["rollout_options"]["discard_ratio"] == 0.15


def test_dataset_batches_are_bounded_in_pixels(tmp_path, monkeypatch) -> None:
    sizes: list[int] = []
    real = distance_service.dataset_mean_attention_distance

    def spy(vm, images, batch_size, **kwargs):
        sizes.append(batch_size)
        return real(vm, images, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(distance_service, "dataset_mean_attention_distance", spy)
    # the tiny ViT sees 32 x 32 = 1024 px per image: 5000 px hold four images per batch
    settings = tiny_settings(tmp_path, preload=False, batch_max_pixels=5000)
    with TestClient(create_app(settings)) as c:
        job = c.post("/api/distance/jobs", data={"source": "samples", "batch_size": "64"}).json()
        assert job["batch_size"] == 4
        assert wait(c, job)["status"] == "done"
    assert sizes == [4]


# ----------------------------------------------------------------------------------------------------------
# Job subscriptions


@pytest.fixture
def proxied(tmp_path):
    settings = tiny_settings(tmp_path, preload=False, max_upload_mb=4.0, trusted_proxies=["testclient"])
    with TestClient(create_app(settings)) as c:
        yield c


def as_client(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def test_a_second_submitter_gets_its_own_subscription(proxied, monkeypatch) -> None:
    gate = held_jobs(monkeypatch)
    files = [("files", ("a.png", photo_png(1), "image/png"))]
    try:
        alice = proxied.post(
            "/api/distance/jobs", data={"source": "upload"}, files=files, headers=as_client("10.0.0.1")
        ).json()
        bob = proxied.post(
            "/api/distance/jobs", data={"source": "upload"}, files=files, headers=as_client("10.0.0.2")
        ).json()
        assert bob["job_id"] != alice["job_id"]
        # Bob cannot cancel Alice's subscription ...
        r = proxied.post(alice["cancel_url"], headers=as_client("10.0.0.2"))
        assert r.status_code == 404
        # ... and cancelling his own leaves Alice's work running
        r = proxied.post(bob["cancel_url"], headers=as_client("10.0.0.2"))
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        time.sleep(0.2)
        assert proxied.get(alice["job_url"]).json()["status"] in ("queued", "running")
    finally:
        gate.set()
    done = wait(proxied, alice)
    assert done["status"] == "done" and done["result"]["n_images"] == 1


def test_the_work_stops_when_the_last_subscriber_cancels(proxied, monkeypatch) -> None:
    calls: list[int] = []
    started = threading.Event()

    def held(vm, images, cancel, **kwargs):
        calls.append(1)
        started.set()
        while not cancel.wait(0.01):
            pass
        raise distance_service.Cancelled("stop")

    monkeypatch.setattr(
        distance_service, "dataset_mean_attention_distance", lambda vm, im, **k: held(vm, im, **k)
    )
    files = [("files", ("a.png", photo_png(1), "image/png"))]
    subs = [
        proxied.post(
            "/api/distance/jobs", data={"source": "upload"}, files=files, headers=as_client(f"10.0.0.{i}")
        ).json()
        for i in (1, 2)
    ]
    assert started.wait(10) and len(calls) == 1  # one computation for both
    proxied.post(subs[0]["cancel_url"], headers=as_client("10.0.0.1"))
    time.sleep(0.2)
    assert proxied.get(subs[1]["job_url"]).json()["status"] == "running"
    proxied.post(subs[1]["cancel_url"], headers=as_client("10.0.0.2"))
    assert wait(proxied, subs[1])["status"] == "cancelled"


# ----------------------------------------------------------------------------------------------------------
# Zips


def test_duplicate_zip_member_names_are_refused(tmp_path) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        for i in range(3):
            zf.writestr("dup.png", photo_png(i))
        zf.writestr("big/dup.png", photo_png(9, size=(300, 200)))
        zf.writestr("dup.png", photo_png(9, size=(300, 200)))
    with TestClient(create_app(tiny_settings(tmp_path, preload=False, max_upload_mb=4.0))) as c:
        r = upload(c, [("set.zip", buf.getvalue())])
        assert r.status_code == 400 and "dup.png" in r.json()["detail"] and "twice" in r.json()["detail"], (
            r.text
        )
        ok = upload(c, [("set.zip", zip_of({"a/x.png": photo_png(1), "b/x.png": photo_png(2)}))])
        assert ok.status_code == 202


def test_each_member_loads_the_entry_whose_header_was_counted() -> None:
    """Two entries named dup.png: each loader reads its own entry (by directory offset), never the last
    entry of that name, so the pixels counted from a header are the pixels decoded."""
    import io
    import zipfile

    from PIL import Image

    from app.services.uploads import _member_loader

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("dup.png", photo_png(1, size=(20, 10)))
        zf.writestr("dup.png", photo_png(2, size=(300, 200)))
    data = buf.getvalue()
    infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    sizes = [Image.open(io.BytesIO(_member_loader("x.zip", data, info)())).size for info in infos]
    assert sizes == [(20, 10), (300, 200)]


def test_the_pixel_budget_counts_what_is_loaded() -> None:
    from app.settings import Settings

    settings = Settings(max_upload_mb=4.0, max_image_pixels=4_000_000, max_job_megapixels=1)
    files = [("x.zip", zip_of({f"{i}.png": photo_png(i, size=(20 + i, 10)) for i in range(5)}))]
    parsed = distance_service.parse_uploads(files, settings)
    import io

    from PIL import Image

    loaded = [Image.open(io.BytesIO(load())).size for load in parsed.loaders]
    assert sum(w * h for w, h in loaded) == parsed.pixels == sum((20 + i) * 10 for i in range(5))


def test_load_run_reports_the_polite_clients_share() -> None:
    """bench/load/run.py's fairness summary: served uploads over all attempts, retries included."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "load" / "run.py"
    spec = importlib.util.spec_from_file_location("load_run", path)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    report = {
        "tally": {
            run.POLITE_UPLOAD: {"2xx": 9, "503": 1},
            "flood: /api/vision/analyze": {"2xx": 5, "503": 40},
            "flood: /api/vision/analysis/[id]/rollout": {"2xx": 20, "503": 60},
        }
    }
    assert run.polite_share(report) == (9, 10)
    text, met = run.fairness_lines(report)
    assert met and "9 of 10 attempts (90 %" in text and "25 answers and 100 503s" in text
    report["tally"][run.POLITE_UPLOAD] = {"2xx": 3, "503": 2, "503: the model is busy (N requests)": 2}
    text, met = run.fairness_lines(report)
    assert met is False and "3 of 5 attempts" in text  # the reasons are not counted as attempts
    assert "the polite client's 503s: 2 x 'the model is busy (N requests)'" in text
