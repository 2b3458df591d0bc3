"""Nested settings (app/settings.py): every ``ATLAS_*`` variable of the flat settings still sets its field,
now in a group; TOML files take flat keys and group tables; keyword arguments take flat names; the
priority flags > environment > TOML > defaults holds across groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import FLAT, Settings, SettingsFileError, load_settings

# Every environment variable the flat Settings read (main at d399545), the value set, and where it lands.
ENV: list[tuple[str, str, str, object]] = [
    ("ATLAS_DEVICE", "cpu", "server.device", "cpu"),
    ("ATLAS_DTYPE", "float16", "server.dtype", "float16"),
    ("ATLAS_GC_FREEZE", "0", "server.gc_freeze", False),
    ("ATLAS_CACHE_DIR", "/tmp/atlas-cache", "server.cache_dir", Path("/tmp/atlas-cache")),
    ("ATLAS_PRELOAD", "false", "server.preload", False),
    (
        "ATLAS_ALLOWED_HOSTS",
        '["example.org", "10.0.0.1"]',
        "server.allowed_hosts",
        ["example.org", "10.0.0.1"],
    ),
    ("ATLAS_SECRET_KEY", "s" * 32, "server.secret_key", "s" * 32),
    ("ATLAS_MAX_JSON_KB", "65", "server.max_json_kb", 65),
    ("ATLAS_GIL_SWITCH_INTERVAL_MS", "2.5", "server.gil_switch_interval_ms", 2.5),
    ("ATLAS_HEADER_TIMEOUT_S", "11.5", "server.header_timeout_s", 11.5),
    ("ATLAS_BODY_TIMEOUT_S", "61", "server.body_timeout_s", 61.0),
    ("ATLAS_KEEP_ALIVE_S", "6", "server.keep_alive_s", 6),
    ("ATLAS_MAX_HEADER_KB", "65", "server.max_header_kb", 65),
    ("ATLAS_MAX_CONNECTIONS", "1001", "server.max_connections", 1001),
    ("ATLAS_TRUSTED_PROXIES", "127.0.0.1,10.0.0.0/8", "server.trusted_proxies", ["127.0.0.1", "10.0.0.0/8"]),
    ("ATLAS_CLIENT_QUEUE_INFLIGHT", "9", "limits.client_queue_inflight", 9),
    ("ATLAS_CLIENT_CPU_INFLIGHT", "7", "limits.client_cpu_inflight", 7),
    ("ATLAS_BATCH_MAX_PIXELS", "1000001", "limits.batch_max_pixels", 1_000_001),
    ("ATLAS_MAX_UPLOAD_MB", "21.5", "limits.max_upload_mb", 21.5),
    ("ATLAS_MAX_IMAGE_PIXELS", "50000001", "limits.max_image_pixels", 50_000_001),
    ("ATLAS_MIN_IMAGE_SIDE", "9", "limits.min_image_side", 9),
    ("ATLAS_QUEUE_SIZE", "33", "limits.queue_size", 33),
    ("ATLAS_QUEUE_MB", "129", "limits.queue_mb", 129),
    ("ATLAS_CPU_WORKERS", "3", "limits.cpu_workers", 3),
    ("ATLAS_CPU_POOL_SIZE", "17", "limits.cpu_pool_size", 17),
    ("ATLAS_DECODE_CONCURRENCY", "3", "limits.decode_concurrency", 3),
    ("ATLAS_RETRY_AFTER_S", "3", "limits.retry_after_s", 3),
    ("ATLAS_WORKER_NICE", "11", "limits.worker_nice", 11),
    ("ATLAS_JOBS_PER_CLIENT", "3", "limits.jobs_per_client", 3),
    ("ATLAS_MAX_ACTIVE_JOBS", "9", "limits.max_active_jobs", 9),
    ("ATLAS_MAX_JOB_MEGAPIXELS", "801", "limits.max_job_megapixels", 801),
    ("ATLAS_MAX_TEXT_CHARS", "4001", "limits.max_text_chars", 4001),
    ("ATLAS_TEXT_INLINE_KB", "513", "limits.text_inline_kb", 513),
    ("ATLAS_TEXT_THUMB_SIZE", "65", "limits.text_thumb_size", 65),
    ("ATLAS_ANALYSIS_CACHE_MB", "769", "caches.analysis_mb", 769),
    ("ATLAS_ANALYSIS_TTL_S", "3601", "caches.analysis_ttl_s", 3601),
    ("ATLAS_IMAGE_CACHE_MB", "129", "caches.image_mb", 129),
    ("ATLAS_TEXT_CACHE_MB", "257", "caches.text_mb", 257),
    ("ATLAS_VIEW_CACHE_MB", "129", "caches.view_mb", 129),
    ("ATLAS_SHARED_CACHE_MB", "1025", "caches.shared_mb", 1025),
    ("ATLAS_VISION_MODELS", '[{"id": "v", "source": "random"}]', "models.vision_models.0.arch_tag", "v"),
    (
        "ATLAS_EXTRA_VISION_MODELS",
        '[{"id": "x", "arch_tag": "a.b"}]',
        "models.extra_vision_models.0.arch_tag",
        "a.b",
    ),
    ("ATLAS_DEFAULT_VISION_MODEL", "v", "models.default_vision_model", "v"),
    ("ATLAS_TEXT_MODELS", '[{"id": "t", "kind": "causal"}]', "models.text_models.0.name", "t"),
    (
        "ATLAS_EXTRA_TEXT_MODELS",
        '[{"id": "e", "kind": "encoder", "max_tokens": 7}]',
        "models.extra_text_models.0.max_tokens",
        7,
    ),
    ("ATLAS_TEXT_HUB_MODELS", "true", "models.text_hub_models", True),
    ("ATLAS_DEFAULT_TEXT_MODEL", "t", "models.default_text_model", "t"),
    ("ATLAS_DEFAULT_SEQ2SEQ_MODEL", "s", "models.default_seq2seq_model", "s"),
    ("ATLAS_BATCHING", "on", "batching.mode", "on"),
    ("ATLAS_BATCH_MAX_SIZE", "17", "batching.max_size", 17),
    ("ATLAS_BATCH_WAIT_MS", "3.5", "batching.wait_ms", 3.5),
    ("ATLAS_BACKEND", "ray", "cluster.backend", "ray"),
    ("ATLAS_RAY_ADDRESS", "ray://head:10001", "cluster.ray_address", "ray://head:10001"),
    ("ATLAS_SERVE_APP_NAME", "other", "cluster.serve_app_name", "other"),
    ("ATLAS_HTTP_FRONT", "serve", "cluster.http_front", "serve"),
    ("ATLAS_INGRESS_REPLICAS", "2", "cluster.ingress_replicas", 2),
    ("ATLAS_VISION_REPLICAS", "2", "cluster.vision_replicas", 2),
    ("ATLAS_TEXT_REPLICAS", "2", "cluster.text_replicas", 2),
    ("ATLAS_NUM_GPUS_PER_REPLICA", "1.5", "cluster.num_gpus_per_replica", 1.5),
    ("ATLAS_NUM_CPUS_PER_REPLICA", "2.5", "cluster.num_cpus_per_replica", 2.5),
    ("ATLAS_MAX_ONGOING_REQUESTS", "3", "cluster.max_ongoing_requests", 3),
    ("ATLAS_MAX_QUEUED_REQUESTS", "-1", "cluster.max_queued_requests", -1),
    ("ATLAS_DATASET_TASK_RETRIES", "4", "cluster.dataset_task_retries", 4),
]


def at(settings: Settings, path: str) -> object:
    value: object = settings
    for part in path.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)  # type: ignore[index]
    return value


@pytest.fixture(autouse=True)
def clean_env(monkeypatch) -> None:
    """No ATLAS_* variable of the calling shell leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("ATLAS_"):
            monkeypatch.delenv(name)


def test_the_table_covers_every_flat_name() -> None:
    assert {name.removeprefix("ATLAS_").lower() for name, *_ in ENV} == set(FLAT)


@pytest.mark.parametrize(("name", "value", "path", "expected"), ENV, ids=[e[0] for e in ENV])
def test_every_env_name_sets_its_nested_field(monkeypatch, name, value, path, expected) -> None:
    try:
        default = at(Settings(), path)
    except IndexError:  # the extra_* lists are empty by default
        default = None
    monkeypatch.setenv(name, value)
    assert at(Settings(), path) == expected
    assert default != expected  # the value set is not the default: the variable did it
    monkeypatch.setenv(name.lower(), value)  # names are case-insensitive, as before
    monkeypatch.delenv(name)
    assert at(Settings(), path) == expected


def test_flat_keywords_group_keywords_and_model_validate() -> None:
    a = Settings(queue_size=3, batching="on", batch_max_size=4, analysis_cache_mb=5, backend="ray")
    b = Settings(
        limits={"queue_size": 3},
        batching={"mode": "on", "max_size": 4},
        caches={"analysis_mb": 5},
        cluster={"backend": "ray"},
    )
    c = Settings.model_validate(
        {"queue_size": 3, "batching": "on", "batch_max_size": 4, "analysis_cache_mb": 5, "backend": "ray"}
    )
    assert a == b == c
    assert (a.limits.queue_size, a.batching.mode, a.batching.max_size, a.caches.analysis_mb) == (
        3,
        "on",
        4,
        5,
    )


def test_replace_applies_flat_names_without_reading_the_sources_again(monkeypatch) -> None:
    s = Settings(queue_size=3)
    monkeypatch.setenv("ATLAS_QUEUE_MB", "7")  # read by a new Settings(), not by replace()
    r = s.replace(backend="ray", device="cpu", batch_max_size=5)
    assert (r.cluster.backend, r.server.device, r.batching.max_size, r.limits.queue_size) == (
        "ray",
        "cpu",
        5,
        3,
    )
    assert r.limits.queue_mb == s.limits.queue_mb == 128 and s.cluster.backend == "local"
    with pytest.raises(ValueError):
        s.replace(queue_size=0)  # validated
    with pytest.raises(TypeError):
        s.replace(no_such_setting=1)


FLAT_NAME = "queue_size"  # a variable, so that /work/settings_rewrite.py leaves this test alone


def test_a_flat_attribute_says_where_it_went() -> None:
    with pytest.raises(AttributeError, match=r"Settings\.queue_size is now Settings\.limits\.queue_size"):
        getattr(Settings(), FLAT_NAME)


def test_toml_flat_keys_group_tables_and_priority(tmp_path, monkeypatch) -> None:
    toml = tmp_path / "atlas.toml"
    toml.write_text(
        'device = "cpu"\nqueue_size = 4\nbatching = "off"\nanalysis_cache_mb = 9\n'
        "[limits]\nretry_after_s = 6\ncpu_pool_size = 5\n"
        "[cluster]\nvision_replicas = 3\n"
        '[[text_models]]\nid = "mine"\nkind = "encoder"\nname = "./m"\n'
    )
    s = load_settings(toml)
    assert (s.server.device, s.limits.queue_size, s.batching.mode, s.caches.analysis_mb) == (
        "cpu",
        4,
        "off",
        9,
    )
    assert (s.limits.retry_after_s, s.limits.cpu_pool_size, s.cluster.vision_replicas) == (6, 5, 3)
    assert s.models.text_specs()["mine"].name == str((tmp_path / "m").resolve())  # relative to the file
    monkeypatch.setenv("ATLAS_RETRY_AFTER_S", "8")  # env over TOML, inside a group table too
    monkeypatch.setenv("ATLAS_QUEUE_SIZE", "10")
    s = load_settings(toml, queue_size=11)  # keywords (flags) over env
    assert (s.limits.retry_after_s, s.limits.queue_size, s.limits.cpu_pool_size) == (8, 11, 5)


def test_toml_unknown_keys_are_refused(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("queue_sise = 3\n")
    with pytest.raises(SettingsFileError, match="queue_sise"):
        load_settings(bad)
    bad.write_text("[limits]\nqueue_sise = 3\n")
    with pytest.raises(ValueError, match="queue_sise"):
        load_settings(bad)


def test_the_example_file_still_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "atlas.example.toml"
    s = load_settings(example)
    assert s.server.device in ("auto", "cpu", "cuda") and s.models.vision_specs()


def test_model_copy_refuses_flat_names() -> None:
    """pydantic's model_copy would set a flat name beside the groups without validation."""
    s = Settings()
    with pytest.raises(TypeError, match=r"replace\(backend="):
        s.model_copy(update={"backend": "ray"})
    copied = s.model_copy(update={"cluster": s.cluster.model_copy(update={"backend": "ray"})})
    assert copied.cluster.backend == "ray" and s.cluster.backend == "local"
