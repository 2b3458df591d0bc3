"""Unit tests for BoundedCache (app/cache.py): byte bound, LRU order, TTL (injected clock), replacement."""

from __future__ import annotations

import threading

from app.cache import BoundedCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(max_bytes: int = 100, ttl_s: float = 60.0, clock: Clock | None = None) -> BoundedCache[bytes]:
    return BoundedCache(max_bytes, ttl_s, len, clock=clock or Clock())


def test_byte_bound_evicts_oldest_first() -> None:
    cache = make(100)
    for key in "abcd":
        cache.put(key, b"x" * 30)
    assert cache.nbytes == 90 and len(cache) == 3
    assert cache.get("a") is None  # the oldest went first
    assert all(cache.get(k) == b"x" * 30 for k in "bcd")


def test_bytes_never_exceed_the_bound_with_mixed_sizes() -> None:
    cache = make(100)
    for i, size in enumerate([10, 60, 25, 40, 5, 99, 1, 50]):
        cache.put(str(i), b"x" * size)
        assert cache.nbytes <= 100
        assert cache.nbytes == sum(len(cache.get(k) or b"") for k in map(str, range(i + 1)))


def test_lru_order_follows_reads() -> None:
    cache = make(90)
    for key in "abc":
        cache.put(key, b"x" * 30)
    assert cache.get("a") is not None  # a becomes the most recent
    cache.put("d", b"x" * 30)
    assert cache.get("b") is None  # b was the least recently used
    assert {k for k in "acd" if k in cache} == {"a", "c", "d"}


def test_ttl_with_injected_clock() -> None:
    clock = Clock()
    cache = make(100, ttl_s=10.0, clock=clock)
    cache.put("a", b"x" * 40)
    clock.now += 10.0
    assert cache.get("a") == b"x" * 40  # exactly the TTL: still fresh
    clock.now += 0.001
    assert cache.get("a") is None  # past it: gone, and its bytes are freed
    assert cache.nbytes == 0 and len(cache) == 0


def test_ttl_counts_from_the_last_put_not_the_last_read() -> None:
    clock = Clock()
    cache = make(100, ttl_s=10.0, clock=clock)
    cache.put("a", b"a")
    clock.now += 6
    assert "a" in cache
    clock.now += 6
    assert "a" not in cache
    cache.put("a", b"a")
    clock.now += 6
    assert "a" in cache  # a new put restarts the clock


def test_replacing_a_key_updates_bytes_and_order() -> None:
    cache = make(100)
    cache.put("a", b"x" * 30)
    cache.put("b", b"x" * 30)
    cache.put("a", b"y" * 50)  # replaced: counted once, now the most recent
    assert len(cache) == 2 and cache.nbytes == 80
    assert cache.get("a") == b"y" * 50
    cache.put("c", b"z" * 20)  # 100: fits
    assert cache.nbytes == 100 and len(cache) == 3
    cache.put("d", b"w" * 10)  # evicts b (the oldest), not a
    assert cache.get("b") is None and cache.get("a") == b"y" * 50
    assert cache.nbytes == 80


def test_concurrent_puts_keep_the_byte_count_exact() -> None:
    cache = make(10_000)
    keys = [f"{t}-{i}" for t in range(4) for i in range(200)]

    def writer(t: int) -> None:
        for i in range(200):
            cache.put(f"{t}-{i}", b"x" * (1 + (i * 7 + t) % 50))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert cache.nbytes <= 10_000
    assert cache.nbytes == sum(len(v) for k in keys if (v := cache.get(k)) is not None)


def test_an_item_larger_than_the_whole_cache_is_not_stored() -> None:
    cache = make(max_bytes=100)
    assert cache.put("small", b"x" * 40)
    assert not cache.put("huge", b"x" * 101)
    assert cache.get("huge") is None and cache.get("small") == b"x" * 40 and cache.nbytes == 40
    assert not cache.put("small", b"y" * 200)  # replacing with an oversize value drops the old one
    assert cache.get("small") is None and cache.nbytes == 0
