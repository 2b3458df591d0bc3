"""Operator settings, read once through get_settings(): command-line flags, ``ATLAS_*`` environment variables
and an optional TOML settings file (``--config`` or ``ATLAS_CONFIG``), in that priority order, over the
defaults below.

Settings are nested by concern: ``server``, ``limits``, ``caches``, ``models``, ``batching`` and
``cluster`` (``settings.limits.queue_size``). Every setting also has ONE flat name (:data:`FLAT`), the
name it had before the nesting, and that name is what the outside world uses: the environment variable is
``ATLAS_`` + the flat name in capitals (``ATLAS_QUEUE_SIZE``, ``ATLAS_VISION_REPLICAS``); a TOML key is
the flat name (``device = "cpu"``, ``[[extra_vision_models]]`` tables) or a group table (``[limits]``
``queue_size = 8``); keyword arguments (the CLI's flags, tests) take flat names or groups. Unknown keys in
the file are refused, and model paths (a vision ``path`` or ``local-dir:`` folder, a text ``name`` starting
with ``./`` or ``../``) are relative to the file's folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from models.devices import DeviceName, DtypeName
from models.text.analysis import DATES, HUB_EXAMPLES, MINILM, TextModelSpec
from models.vision.registry import DINOV2_VITS14, VisionModelSpec

BatchingMode = Literal["auto", "on", "off"]  # dynamic batching: auto = on for CUDA, off on CPU
Backend = Literal["local", "ray"]  # where model work runs

# The allowlist entries are the models' own specs (pydantic validates the dataclasses from TOML and env
# JSON); these names stay for code written against the former pydantic mirrors.
VisionModelEntry = VisionModelSpec
TextModelEntry = TextModelSpec


MIN_SECRET_BYTES = 32  # ATLAS_SECRET_KEY keys every id (HMAC-SHA256): at least as long as its output
CONFIG_ENV = "ATLAS_CONFIG"  # path of the TOML settings file when --config is not given
_config_file: ContextVar[Path | None] = ContextVar("atlas_config_file", default=None)


class SettingsFileError(ValueError):
    """The TOML settings file is missing or names a setting that does not exist, or an ``ATLAS_*`` variable
    that takes JSON holds none."""


def config_file() -> Path | None:
    """The TOML settings file in effect: the one :func:`using_config` set, else ``$ATLAS_CONFIG``."""
    given = _config_file.get() or os.environ.get(CONFIG_ENV) or None
    return Path(given) if given else None


@contextmanager
def using_config(path: str | Path | None) -> Iterator[None]:
    """Settings built inside this block read ``path`` (``None``: ``$ATLAS_CONFIG``) as their TOML file."""
    token = _config_file.set(Path(path) if path else None)
    try:
        yield
    finally:
        _config_file.reset(token)


# ---------------------------------------------------------------------------------------------- groups


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(Group):
    """The process: device, weights cache, hosts it answers, request bodies."""

    device: DeviceName = "auto"
    dtype: DtypeName = "float32"
    cache_dir: Path = Path(".cache")
    preload: bool = True  # load the default models in the lifespan (tests may turn it off)
    allowed_hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"])
    secret_key: str | None = None  # keys analysis ids (HMAC of the content); random per process if unset
    max_json_kb: int = 64  # request bodies that are not multipart uploads
    gil_switch_interval_ms: float = Field(1.0, gt=0, le=100)  # how long a busy worker may keep the GIL
    # slow clients (app/server.py, `python -m app serve`): past a limit the connection is closed
    header_timeout_s: float = Field(10.0, gt=0)  # to send the request line and headers
    body_timeout_s: float = Field(60.0, gt=0)  # to send the whole body (20 MB at >= 350 kB/s)
    keep_alive_s: int = Field(5, ge=1)  # an idle kept-alive connection
    max_header_kb: int = Field(64, ge=1)  # request line + headers
    max_connections: int = Field(1000, ge=1)  # open at once; the next gets a JSON 503 + Retry-After
    # peers whose X-Forwarded-For / X-Forwarded-Proto are believed (IPs or CIDRs, e.g. ["127.0.0.1"] behind
    # a reverse proxy on this machine); empty: the socket's peer is the client, forwarded headers are ignored
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)  # env: comma-separated

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):  # ATLAS_TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8 (or a JSON list)
            text = value.strip()
            return (
                json.loads(text)
                if text.startswith("[")
                else [p.strip() for p in text.split(",") if p.strip()]
            )
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_secret(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"ATLAS_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes (it has {len(value.encode())}); "
                'make one with: python -c "import secrets; print(secrets.token_hex(32))"'
            )
        return value


class LimitsSettings(Group):
    """The resource budget (docs "Resource model") and input limits. Peak RSS <= base + the cache budgets
    + one forward + cpu_workers x largest view + decode_concurrency x largest decode + job uploads."""

    max_upload_mb: float = 20.0
    max_image_pixels: int = 50_000_000  # larger images are refused as decompression bombs
    min_image_side: int = 8
    queue_size: int = Field(32, ge=1)  # model requests waiting or running; beyond that: 503 + Retry-After
    queue_mb: int = Field(128, ge=1)  # ... and the decoded inputs those waiting requests hold
    cpu_workers: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 2)), ge=1)
    cpu_pool_size: int = Field(16, ge=1)  # CPU-heavy views/decodes waiting or running; beyond that: 503
    decode_concurrency: int = Field(2, ge=1)  # image decodes at once (each is capped in pixels and bytes)
    retry_after_s: int = 2
    worker_nice: int = Field(10, ge=0, le=19)  # executor threads run this much below the event loop (Linux)
    jobs_per_client: int = Field(2, ge=1)  # dataset jobs one client address may have queued or running
    max_active_jobs: int = Field(8, ge=1)  # dataset jobs queued or running, all clients together
    max_job_megapixels: int = Field(800, ge=1)  # pixels one image-set job may decode in all (from headers)
    max_text_chars: int = 4000
    text_inline_kb: int = 512  # full maps go inline in the first response up to this many float32 bytes
    text_thumb_size: int = 64  # model-view thumbnails are max-pooled to at most this many cells a side
    # users are kept apart (docs/trust.md): one client's share of each executor
    client_queue_inflight: int = Field(16, ge=1)  # model requests one client may have waiting or running
    client_cpu_inflight: int = Field(8, ge=1)  # CPU-pool jobs one client may have waiting or running
    batch_max_pixels: int = Field(1_000_000, ge=1)  # input pixels per dataset batch (e.g. 4 images at 448 px)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class CachesSettings(Group):
    """Caches bounded in bytes (and in time: ``analysis_ttl_s``)."""

    analysis_mb: int = 768  # vision maps (L, H, N, N) float16: ~151 MB at 448 px, ~9.5 MB at 224
    analysis_ttl_s: int = 3600
    image_mb: int = 128  # decoded uploads (each reduced to <= 4 MP before it is kept)
    text_mb: int = 256  # text maps, float32
    view_mb: int = 128  # derived views (rollout, distance, text views, figures) per (id, options)
    shared_mb: int = Field(1024, ge=1)  # the cluster's object-store index of analyses (ingress_replicas > 1)


class ModelsSettings(Group):
    """The operator's allowlists and the default models."""

    vision_models: list[VisionModelSpec] = Field(default_factory=lambda: [DINOV2_VITS14])
    extra_vision_models: list[VisionModelSpec] = Field(default_factory=list)
    default_vision_model: str = DINOV2_VITS14.id
    text_models: list[TextModelSpec] = Field(default_factory=lambda: [MINILM, DATES])
    extra_text_models: list[TextModelSpec] = Field(default_factory=list)  # operator's own allowlist
    text_hub_models: bool = False  # also allow bert-base-uncased, gpt2, opus-mt-en-de (needs a network)
    default_text_model: str = MINILM.id
    default_seq2seq_model: str = DATES.id

    def text_specs(self) -> dict[str, TextModelSpec]:
        hub = list(HUB_EXAMPLES) if self.text_hub_models else []
        return {e.id: e for e in [*self.text_models, *hub, *self.extra_text_models]}

    def vision_specs(self) -> dict[str, VisionModelSpec]:
        return {e.id: e for e in [*self.vision_models, *self.extra_vision_models]}


class BatchingSettings(Group):
    """Dynamic batching of single-image vision forwards (app/batching.py): auto = on for CUDA, off on CPU."""

    mode: BatchingMode = "auto"
    max_size: int = Field(16, ge=1)  # images in one batched forward at most
    wait_ms: float = Field(2.0, ge=0, le=1000)  # how long a lone request waits for company


class ClusterSettings(Group):
    """The Ray backend (docs "Local and Ray backends"; ``make run-cluster``, app/cluster/)."""

    backend: Backend = "local"  # ray: forwards run in Ray Serve model deployments
    ray_address: str | None = None  # an existing cluster ("auto", "ray://..."); None: start a local one
    serve_app_name: str = "atlas"
    ingress_replicas: int = Field(1, ge=1)  # FastAPI ingress replicas (analyses shared via the object store)
    vision_replicas: int = Field(1, ge=1)  # VisionModels replicas, each holding the vision models
    text_replicas: int = Field(1, ge=1)  # TextModels replicas, each holding the text models
    num_gpus_per_replica: float = Field(0.0, ge=0)  # per model replica and per dataset task
    num_cpus_per_replica: float = Field(1.0, ge=0)
    max_ongoing_requests: int = Field(2, ge=1)  # forwards one model replica runs at once
    max_queued_requests: int = Field(32, ge=-1)  # per deployment handle; beyond: 503 + Retry-After (-1: none)
    dataset_task_retries: int = Field(3, ge=0)  # Ray re-runs a dataset batch whose worker died


GROUPS: dict[str, type[Group]] = {
    "server": ServerSettings,
    "limits": LimitsSettings,
    "caches": CachesSettings,
    "models": ModelsSettings,
    "batching": BatchingSettings,
    "cluster": ClusterSettings,
}
_RENAMED = {  # flat name -> (group, field) where the field is not the flat name
    "analysis_cache_mb": ("caches", "analysis_mb"),
    "image_cache_mb": ("caches", "image_mb"),
    "text_cache_mb": ("caches", "text_mb"),
    "view_cache_mb": ("caches", "view_mb"),
    "shared_cache_mb": ("caches", "shared_mb"),
    "batching": ("batching", "mode"),
    "batch_max_size": ("batching", "max_size"),
    "batch_wait_ms": ("batching", "wait_ms"),
}
# Every setting's flat name (its ATLAS_* variable and TOML key) -> (group, field).
FLAT: dict[str, tuple[str, str]] = {
    **{
        field: (group, field)
        for group, cls in GROUPS.items()
        for field in cls.model_fields
        if (group, field) not in _RENAMED.values()
    },
    **_RENAMED,
}


def nest(data: dict[str, Any]) -> dict[str, Any]:
    """Flat names -> their groups (``{"queue_size": 3}`` -> ``{"limits": {"queue_size": 3}}``); group
    tables are merged, a flat name winning over the same field in a group table of the same source."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in GROUPS and isinstance(value, dict):
            out.setdefault(key, {}).update(value)
    for key, value in data.items():
        if key in GROUPS and isinstance(value, dict):
            continue
        if key in FLAT:
            group, field = FLAT[key]
            out.setdefault(group, {})[field] = value
        elif key not in GROUPS:
            out[key] = value  # unknown: refused by the file source, ignored like before for keywords
    return out


def _is_complex(group: str, field: str) -> bool:
    """Whether an environment value of this field is JSON (lists, dicts, model entries)."""
    info = GROUPS[group].model_fields[field]
    if any(isinstance(m, NoDecode) or m is NoDecode for m in info.metadata):
        return False  # the field's own validator parses the raw string
    annotation = info.annotation
    return any(get_origin(a) in (list, dict) for a in (annotation, *get_args(annotation)))


class FlatEnvSource(PydanticBaseSettingsSource):
    """``ATLAS_<FLAT NAME>`` environment variables (case-insensitive; lists and model entries as JSON)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # unused: __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = {k.lower(): v for k, v in os.environ.items()}
        found: dict[str, Any] = {}
        for name, (group, field) in FLAT.items():
            value = env.get(f"atlas_{name}")
            if value is None:
                continue
            if _is_complex(group, field):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as e:
                    raise SettingsFileError(f"ATLAS_{name.upper()} is not valid JSON ({e})") from e
            found[name] = value
        return nest(found)


class NestedSource(PydanticBaseSettingsSource):
    """Another source (keyword arguments, the TOML file) with its flat names put into their groups."""

    def __init__(self, settings_cls: type[BaseSettings], source: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.source = source

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # unused: __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return nest(self.source())


class AtlasTomlSource(TomlConfigSettingsSource):
    """The operator's TOML file: every top-level key must be a flat setting name or a group table; model paths
    are relative to the file's folder (vision ``path`` and ``local-dir:`` folders; text ``name`` when it
    starts with ``./`` or ``../``)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        if not path.is_file():
            raise SettingsFileError(f"the settings file {path} does not exist")
        self._fields = set(FLAT) | set(GROUPS)  # _read_file runs inside the parent's __init__
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Path) -> dict[str, Any]:  # type: ignore[override]
        data = super()._read_file(file_path)
        unknown = sorted(set(data) - self._fields)
        if unknown:
            raise SettingsFileError(f"{file_path}: unknown setting(s) {', '.join(unknown)}")
        data = nest(data)
        models = data.get("models") or {}
        base = Path(file_path).resolve().parent
        for key in ("vision_models", "extra_vision_models"):
            for entry in models.get(key) or []:
                if not isinstance(entry, dict):
                    continue
                if entry.get("path") and not Path(entry["path"]).is_absolute():
                    entry["path"] = str(base / entry["path"])
                tag = str(entry.get("arch_tag") or "")
                if tag.startswith("local-dir:") and not Path(tag.removeprefix("local-dir:")).is_absolute():
                    entry["arch_tag"] = f"local-dir:{(base / tag.removeprefix('local-dir:')).resolve()}"
        for key in ("text_models", "extra_text_models"):
            for entry in models.get(key) or []:
                name = entry.get("name") if isinstance(entry, dict) else None
                if isinstance(name, str) and name.startswith(("./", "../")):
                    entry["name"] = str((base / name).resolve())
        return data


class Settings(BaseSettings):
    """Every setting, by group; see the module docstring for the flat names."""

    model_config = SettingsConfigDict(env_prefix="ATLAS_", env_file=None, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Priority, first wins: keyword arguments (the CLI's flags) > ATLAS_* environment > TOML file."""
        path = config_file()
        toml = (AtlasTomlSource(settings_cls, path),) if path else ()
        return (NestedSource(settings_cls, init_settings), FlatEnvSource(settings_cls), *toml)

    server: ServerSettings = Field(default_factory=ServerSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    caches: CachesSettings = Field(default_factory=CachesSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_names(cls, data: Any) -> Any:
        """``Settings.model_validate({"queue_size": 3})`` too (the sources have nested already)."""
        return nest(data) if isinstance(data, dict) else data

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (flat names or groups) applied, without reading the sources again."""
        update: dict[str, Any] = {}
        for group, fields in nest(changes).items():
            if group not in GROUPS:
                raise TypeError(f"unknown setting {group!r}")
            current = getattr(self, group)
            update[group] = current.model_validate({**current.model_dump(), **fields})
        return self.model_copy(update=update)

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Settings:
        """pydantic's copy; a flat name in ``update`` would land beside the groups unvalidated: refused."""
        flat = sorted(set(update or ()) - set(GROUPS))
        if flat:
            raise TypeError(
                f"Settings.model_copy(update=...) takes groups; use settings.replace({flat[0]}=...)"
            )
        return super().model_copy(update=update, deep=deep)

    def __getattr__(self, name: str) -> Any:
        if name in FLAT:  # a name from before the nesting: say where it went
            group, field = FLAT[name]
            raise AttributeError(f"Settings.{name} is now Settings.{group}.{field}")
        return super().__getattr__(name)  # type: ignore[misc]


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``overrides`` (highest priority), the environment, then the TOML file ``config``
    (default ``$ATLAS_CONFIG``), then the defaults."""
    with using_config(config):
        return Settings(**overrides)


@lru_cache
def get_settings() -> Settings:
    return Settings()
