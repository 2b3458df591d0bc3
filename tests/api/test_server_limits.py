"""Slow clients are cut off (issue 17 §5) and a non-loopback bind warns (§2): app/server.py through a real
uvicorn server on 127.0.0.1 (tiny models, nothing preloaded). Connection counts and times are bounded: at
most 20 slow connections, every limit a second or two."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from app.cli import build_parser, serve
from app.main import create_app
from app.server import is_loopback, uvicorn_options, warn_if_exposed
from tests.conftest import run_in_own_loop, tiny_settings

HEADER_S, BODY_S, KEEP_ALIVE_S = 2.0, 1.5, 1
SLACK_S = 1.5  # scheduling on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(tmp_path, **limits) -> Iterator[int]:
    """A uvicorn server on 127.0.0.1 with the CLI's options (app.server.uvicorn_options); yields its port."""
    settings = tiny_settings(
        tmp_path,
        preload=False,
        header_timeout_s=HEADER_S,
        body_timeout_s=BODY_S,
        keep_alive_s=KEEP_ALIVE_S,
        **limits,
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", **uvicorn_options(settings)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


async def read_until_closed(reader: asyncio.StreamReader, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when (s since the call)."""
    t0, data = time.monotonic(), b""
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), limit_s)
        if not chunk:
            return data, time.monotonic() - t0
        data += chunk


async def trickle(port: int, stop: asyncio.Event) -> tuple[bytes, float]:
    """A slowloris client: one header line every 0.2 s, never the end of the headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")

    async def drip() -> None:
        for i in range(100):
            await asyncio.sleep(0.2)
            if reader.at_eof() or stop.is_set():
                return
            try:
                writer.write(b"X-Slow-%d: x\r\n" % i)
                await writer.drain()
            except ConnectionError:
                return

    dripping = asyncio.ensure_future(drip())
    data, _ = await read_until_closed(reader, HEADER_S + 10)
    dripping.cancel()
    writer.close()
    return data, time.monotonic() - t0


def test_slow_headers_are_cut_off_while_others_are_served(tmp_path) -> None:
    n = 20

    async def scenario() -> tuple[list[tuple[bytes, float]], list[int], int]:
        stop = asyncio.Event()
        slow = [asyncio.ensure_future(trickle(port, stop)) for _ in range(n)]
        await asyncio.sleep(0.3)  # the slow clients are connected and dripping
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            codes = [(await http.get("/api/health")).status_code for _ in range(2)]
        still_open = sum(not t.done() for t in slow)
        results = await asyncio.gather(*slow)
        stop.set()
        return results, codes, still_open

    with serving(tmp_path) as port:
        results, codes, still_open = run_in_own_loop(scenario)
    assert codes == [200, 200] and still_open == n, (codes, still_open)  # served while all n were held
    for data, elapsed in results:
        assert data.startswith(b"HTTP/1.1 408"), data[:80]
        assert HEADER_S - 0.1 <= elapsed <= HEADER_S + SLACK_S, elapsed


def test_silent_connection_stalled_body_and_idle_keep_alive_are_closed(tmp_path) -> None:
    async def silent() -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        out = await read_until_closed(reader, HEADER_S + 10)
        writer.close()
        return out

    async def stalled_body() -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /api/text/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"text": "'
        )
        out = await read_until_closed(reader, BODY_S + 10)
        writer.close()
        return out

    async def idle_after_request() -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
        )
        await reader.readexactly(length)
        out = await read_until_closed(reader, KEEP_ALIVE_S + 10)
        writer.close()
        return head + out[0], out[1]

    async def all_three():
        return await asyncio.gather(silent(), stalled_body(), idle_after_request())

    with serving(tmp_path) as port:
        (silent_data, silent_s), (body_data, body_s), (kept, idle_s) = run_in_own_loop(all_three)
    assert silent_data.startswith(b"HTTP/1.1 408") and silent_s <= HEADER_S + SLACK_S, (silent_data, silent_s)
    # the app was reading the body when the connection closed: no response, just the close
    assert BODY_S - 0.1 <= body_s <= BODY_S + SLACK_S and b" 200 " not in body_data, (body_data, body_s)
    assert kept.startswith(b"HTTP/1.1 200") and idle_s <= KEEP_ALIVE_S + SLACK_S, idle_s


def test_connection_cap_answers_json_503_and_huge_headers_431(tmp_path) -> None:
    cap = 4

    async def scenario() -> tuple[bytes, bytes, int]:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(cap)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        refused, _ = await read_until_closed(reader, 5)
        writer.close()
        for _, w in held:
            w.close()
        await asyncio.sleep(0.3)  # the held ones are gone: the next is served
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n"
        )
        big, _ = await read_until_closed(reader, 5)
        writer.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            ok = (await http.get("/api/health")).status_code
            # a body sent at once is not cut off, however long the analysis then takes (> BODY_S here is fine)
            posted = await http.post("/api/text/analyze", json={"text": "Attention is all you need."})
            assert posted.status_code == 200, posted.text
        return refused, big, ok

    with serving(tmp_path, max_connections=cap, max_header_kb=8, retry_after_s=3) as port:
        refused, big, ok = run_in_own_loop(scenario)
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"retry-after: 3" in head.lower(), head
    assert json.loads(body) == {
        "detail": "Too many connections; try again in a few seconds.",
        "retry_after_s": 3,
    }
    assert big.startswith(b"HTTP/1.1 431"), big[:80]
    assert ok == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serve_warns_on_a_non_loopback_bind(tmp_path, monkeypatch, caplog) -> None:
    """``python -m app serve --host 0.0.0.0`` logs the warning before uvicorn starts; 127.0.0.1 does not."""
    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setattr("app.cli.serve_settings", lambda args: tiny_settings(tmp_path, preload=False))
    for host in ("0.0.0.0", "127.0.0.1"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="atlas.server"):
            assert serve(build_parser().parse_args(["serve", "--host", host])) == 0
        warned = [r for r in caplog.records if "beyond loopback" in r.getMessage()]
        assert len(warned) == (host == "0.0.0.0"), host
    assert [c["host"] for c in calls] == ["0.0.0.0", "127.0.0.1"]
    assert calls[0]["timeout_keep_alive"] == 5 and calls[0]["http"].header_timeout_s == 10.0
    assert warn_if_exposed("10.0.0.5", "x") and not warn_if_exposed("127.0.0.1", "x")


def test_one_worker_whatever_web_concurrency_says(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    options = uvicorn_options(tiny_settings(tmp_path, preload=False))
    assert uvicorn.Config("app.main:create_app", factory=True, **options).workers == 1
    assert uvicorn.Config("app.main:create_app", factory=True).workers == 4  # what the option prevents


def test_make_binds_atlas_host_and_ignores_host() -> None:
    """``make run`` / ``make run-cluster`` take ATLAS_HOST (default 127.0.0.1); a stray HOST is ignored."""
    import os
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("no make")

    def dry_run(target: str, **env: str) -> str:
        full = {k: v for k, v in os.environ.items() if k not in ("HOST", "ATLAS_HOST")} | env
        out = subprocess.run(["make", "-n", target], env=full, capture_output=True, text=True, check=True)
        return next(line for line in out.stdout.splitlines() if " --port " in line)

    for target in ("run", "run-cluster"):
        assert "--host 127.0.0.1 " in dry_run(target, HOST="0.0.0.0"), target
        assert "--host 10.1.2.3 " in dry_run(target, ATLAS_HOST="10.1.2.3"), target
