"""The one owner of loaded models: a :class:`ModelStore` per family (vision, text), used by every front door.

A store maps our model ids to loaded models, once per process:

- the allowlist: ``get("some-id")`` looks the id up in the specs it was given (the operator's settings for
  the server and the Ray replicas); an id not there is :class:`UnknownModel` (400). A spec object itself
  (``get(spec)``: the export command's ``--model PATH``, a Ray dataset task) is loaded as given, keyed by
  its id, without the allowlist;
- load once: concurrent first requests for one id share one load (the first caller loads, the others wait
  for its future), whether they come from worker threads (:meth:`ModelStore.get`) or from the event loop
  (:meth:`ModelStore.get_async`, which loads on the one loader thread of the process, shared by every
  store, so the event loop never blocks, forwards waiting in the compute queue do not delay it, and two
  models never load at once);
- a model that cannot be loaded (a Hub repo not reachable, a bad checkpoint) is a
  :class:`app.services.errors.ServiceError` 503 naming it; nothing is kept, so a later call tries again;
- ``loaded()`` lists the ids in memory (``/api/health``); ``preload(ids)`` loads the defaults at start-up;
  ``put(id, model)`` installs a model object the caller already holds (tests, notebooks).

Vision models also take a resolution: :meth:`VisionStore.get_at` checks it (:class:`InvalidOption`, 400).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from app.compute import lower_priority
from app.services.errors import InvalidOption, ModelUnavailable, ServiceError, UnknownModel

if TYPE_CHECKING:
    import torch

    from app.settings import Settings
    from models.text.analysis import TextModel, TextModelSpec
    from models.vision.analysis import VisionModel
    from models.vision.registry import VisionModelSpec  # noqa: F401 (VisionStore's type argument)

S = TypeVar("S")  # a spec: VisionModelSpec or TextModelSpec (has ``.id``)
M = TypeVar("M")  # a loaded model
log = logging.getLogger("atlas.models")
LOAD_ERRORS = (OSError, ValueError, RuntimeError, ImportError)  # what a failed load raises (503)
_loader: ThreadPoolExecutor | None = None  # the process's one loader thread (get_async), made on first use
_loader_lock = threading.Lock()


def loader(nice: int = 0) -> ThreadPoolExecutor:
    """The one executor models load on off the event loop (one thread, at ``nice`` below normal priority,
    fixed by its first caller)."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="atlas-load", initializer=lower_priority, initargs=(nice,)
            )
        return _loader


class ModelStore(Generic[S, M]):
    """Loaded models of one family (module docstring). ``specs()`` gives the allowlist (id -> spec),
    ``load(spec)`` loads one model; ``default`` is the id ``get(None)`` means."""

    def __init__(
        self,
        family: str,
        specs: Callable[[], Mapping[str, S]],
        load: Callable[[S], M],
        default: str | None = None,
        nice: int = 0,
    ) -> None:
        self.family = family
        self.specs = specs
        self.default = default
        self._load = load
        self._nice = nice
        self._lock = threading.Lock()
        self._models: dict[str, M] = {}
        self._loading: dict[str, Future] = {}  # id -> the future of its load in progress
        self.loads = 0  # loads started (tests)

    def spec(self, model: str | S | None = None) -> S:
        """The spec for an allowlisted id (or the default), or the spec given; :class:`UnknownModel`."""
        if model is not None and not isinstance(model, str):
            return model
        model_id = model or self.default
        specs = self.specs()
        if model_id not in specs:
            raise UnknownModel(f"Unknown {self.family} model {model_id!r}. Available: {', '.join(specs)}.")
        return specs[model_id]

    def loaded(self) -> list[str]:
        """Ids of the models in memory, in load order."""
        with self._lock:
            return list(self._models)

    def put(self, model_id: str, model: M) -> None:
        """Install a model object the caller holds (replacing any loaded under that id)."""
        with self._lock:
            self._models[model_id] = model

    def _claim(self, model_id: str) -> tuple[M | None, Future | None, bool]:
        """Under the lock: (loaded model, or None with the load's future and whether this caller loads)."""
        with self._lock:
            if model_id in self._models:
                return self._models[model_id], None, False
            future = self._loading.get(model_id)
            if future is not None:
                return None, future, False
            future = self._loading[model_id] = Future()
            self.loads += 1
            return None, future, True

    def _run_load(self, spec: Any, future: Future) -> M:
        """Load ``spec`` (this caller claimed it), publish the model or the 503, and return or raise it."""
        model_id = spec.id
        try:
            model = self._load(spec)
        except LOAD_ERRORS as e:
            error = ModelUnavailable(f"The {self.family} model {model_id!r} could not be loaded: {e}")
            error.__cause__ = e
            with self._lock:
                del self._loading[model_id]
            future.set_exception(error)
            raise error from e
        except BaseException as e:  # a bug: waiters see it too, and the next call retries
            with self._lock:
                del self._loading[model_id]
            future.set_exception(e)
            raise
        with self._lock:
            self._models[model_id] = model
            del self._loading[model_id]
        future.set_result(model)
        return model

    def get(self, model: str | S | None = None) -> M:
        """The model, loaded once per process (blocking: for worker threads, replicas, scripts)."""
        spec = self.spec(model)
        loaded, future, owner = self._claim(spec.id)  # type: ignore[attr-defined]
        if loaded is not None or future is None:
            return loaded  # type: ignore[return-value]
        return self._run_load(spec, future) if owner else future.result()

    async def get_async(self, model: str | S | None = None) -> M:
        """The model; a first load runs on the loader thread (merged per id), off the event loop."""
        spec = self.spec(model)
        loaded, future, owner = self._claim(spec.id)  # type: ignore[attr-defined]
        if loaded is not None or future is None:
            return loaded  # type: ignore[return-value]
        if owner:
            loader(self._nice).submit(self._run_load_quietly, spec, future)
        return await asyncio.shield(asyncio.wrap_future(future))

    def _run_load_quietly(self, spec: Any, future: Future) -> None:
        with contextlib.suppress(Exception):  # the error is on the future, for its waiters
            self._run_load(spec, future)

    def preload(self, ids: Iterable[str | None], required: bool = False) -> dict[str, str]:
        """Load ``ids`` now (the lifespan); returns id -> error for those that failed (logged). With
        ``required`` a failure is raised instead (the server does not start without its default)."""
        failed: dict[str, str] = {}
        for model_id in ids:
            model_id = model_id or self.default
            if model_id not in self.specs():
                continue
            try:
                self.get(model_id)
            except ServiceError as e:
                if required:
                    raise
                log.warning("%s model %s not preloaded: %s", self.family, model_id, e)
                failed[str(model_id)] = str(e)
        return failed

    def close(self) -> None:
        """Nothing to release: the loader thread is the process's, and models go with the store."""


class VisionStore(ModelStore["VisionModelSpec", "VisionModel"]):
    """Vision models; a request also names a resolution the model must take."""

    def get_at(self, model: str | None, resolution: int | None) -> tuple[VisionModel, int]:
        """The model and a resolution it accepts (its default when None); :class:`InvalidOption`."""
        return at_resolution(self.get(model), resolution)

    async def get_at_async(self, model: str | None, resolution: int | None) -> tuple[VisionModel, int]:
        return at_resolution(await self.get_async(model), resolution)


def at_resolution(vm: VisionModel, resolution: int | None) -> tuple[VisionModel, int]:
    try:
        return vm, vm.check_resolution(resolution)
    except ValueError as e:
        raise InvalidOption(str(e)) from e


def vision_store(
    settings: Settings, device: torch.device, dtype: torch.dtype, specs: Callable | None = None
) -> VisionStore:
    """The settings' vision allowlist, loaded on ``device`` in ``dtype`` with the settings' cache dir."""
    from models.vision.analysis import load_vision_model

    return VisionStore(
        "vision",
        specs or settings.models.vision_specs,
        lambda spec: load_vision_model(spec, device, dtype, settings.server.cache_dir),
        default=settings.models.default_vision_model,
        nice=settings.limits.worker_nice,
    )


def text_store(
    settings: Settings, device: torch.device, specs: Callable | None = None
) -> ModelStore[TextModelSpec, TextModel]:
    """The settings' text allowlist, loaded on ``device``."""
    from models.text.analysis import load_text_model

    return ModelStore(
        "text",
        specs or settings.models.text_specs,
        lambda spec: load_text_model(spec, device),
        default=settings.models.default_text_model,
        nice=settings.limits.worker_nice,
    )
