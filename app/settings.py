"""Operator settings, read once through get_settings(): command-line flags, ``ATLAS_*`` environment variables
and an optional TOML settings file (``--config`` or ``ATLAS_CONFIG``), in that priority order, over the
defaults below.

Settings are nested by concern (the groups are in :mod:`app.settings_groups`): ``server``, ``limits``, ``caches``, ``models``, ``batching`` and
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
from typing import Any, get_args, get_origin

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from app.settings_groups import (  # noqa: F401  (re-exported: app.settings is where callers import them)
    FLAT,
    GROUPS,
    MIN_SECRET_BYTES,
    Backend,
    BatchingMode,
    BatchingSettings,
    CachesSettings,
    ClusterSettings,
    Group,
    LimitsSettings,
    ModelsSettings,
    ServerSettings,
    nest,
)
from models.text.analysis import TextModelSpec
from models.vision.registry import VisionModelSpec

# The allowlist entries are the models' own specs (pydantic validates the dataclasses from TOML and env
# JSON); these names stay for code written against the former pydantic mirrors.
VisionModelEntry = VisionModelSpec
TextModelEntry = TextModelSpec


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
