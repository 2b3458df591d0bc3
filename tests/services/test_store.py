"""app/store.py: one owner of model loading per family (allowlist, load once, 503 on failure, preload)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import pytest
import torch

from app.services.errors import ServiceError
from app.store import InvalidOption, ModelStore, UnknownModel, text_store, vision_store
from models.text.analysis import load_text_model
from models.vision.analysis import load_vision_model
from tests.conftest import TINY_SPECS, run_in_own_loop, tiny_settings


@dataclass(frozen=True)
class Spec:
    id: str


class Loader:
    """Counts calls; sleeps so concurrent callers overlap; fails while ``fail`` is set."""

    def __init__(self, delay: float = 0.2) -> None:
        self.calls: list[str] = []
        self.threads: list[str] = []
        self.delay = delay
        self.fail = False
        self._lock = threading.Lock()

    def __call__(self, spec: Spec) -> object:
        with self._lock:
            self.calls.append(spec.id)
            self.threads.append(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail:
            raise OSError("the hub is not reachable")
        return ("model", spec.id)


def make_store(loader: Loader) -> ModelStore:
    specs = {"a": Spec("a"), "b": Spec("b")}
    return ModelStore("vision", lambda: specs, loader, default="a")


def test_concurrent_first_gets_load_once() -> None:
    loader = Loader()
    store = make_store(loader)
    out: list[object] = []
    threads = [threading.Thread(target=lambda: out.append(store.get("a"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert loader.calls == ["a"] and out == [("model", "a")] * 8
    assert store.get(None) is out[0]  # None = the default id


def test_concurrent_async_and_sync_first_requests_share_one_load() -> None:
    loader = Loader()
    store = make_store(loader)

    async def main() -> list[object]:
        first = [asyncio.create_task(store.get_async("b")) for _ in range(6)]
        await asyncio.sleep(0)  # the tasks run up to their await: the first has claimed the load
        sync = asyncio.get_running_loop().run_in_executor(None, store.get, "b")
        return await asyncio.gather(*first, sync)

    results = run_in_own_loop(lambda: main())
    assert loader.calls == ["b"] and all(r is results[0] for r in results)
    assert loader.threads[0].startswith("atlas-load")  # the one loader thread, not the event loop's
    store.close()


def test_unknown_id_is_unknown_model_and_loads_nothing() -> None:
    loader = Loader(0)
    store = make_store(loader)
    with pytest.raises(UnknownModel, match="'zzz'.*Available: a, b"):
        store.get("zzz")
    with pytest.raises(UnknownModel):
        run_in_own_loop(lambda: store.get_async("zzz"))
    assert loader.calls == []


def test_a_spec_object_loads_without_the_allowlist() -> None:
    loader = Loader(0)
    store = make_store(loader)
    assert store.get(Spec("off-list")) == ("model", "off-list")
    assert store.loaded() == ["off-list"]


def test_failed_load_is_503_naming_the_model_and_a_later_call_retries() -> None:
    loader = Loader(0.05)
    store = make_store(loader)
    loader.fail = True
    with pytest.raises(ServiceError) as e:
        store.get("a")
    assert e.value.status == 503 and "'a' could not be loaded" in str(e.value) and "hub" in str(e.value)
    with pytest.raises(ServiceError) as e2:
        run_in_own_loop(lambda: store.get_async("a"))
    assert e2.value.status == 503
    assert store.loaded() == []
    loader.fail = False
    assert store.get("a") == ("model", "a")
    assert loader.calls == ["a", "a", "a"]  # nothing kept after a failure: each call tried again
    store.close()


def test_loaded_put_and_preload() -> None:
    loader = Loader(0)
    store = make_store(loader)
    assert store.loaded() == []
    store.put("b", "held")
    assert store.loaded() == ["b"] and store.get("b") == "held" and loader.calls == []
    assert store.preload(["a", "not-listed", None]) == {}  # unknown ids are skipped, None = the default
    assert store.loaded() == ["b", "a"] and loader.calls == ["a"]
    failing = make_store(Loader(0))
    failing._load.fail = True  # type: ignore[attr-defined]
    failed = failing.preload(["a", "b"])
    assert set(failed) == {"a", "b"} and "could not be loaded" in failed["a"]
    with pytest.raises(ServiceError):
        failing.preload(["a"], required=True)


def test_vision_store_loads_the_settings_models_as_load_vision_model_does(tmp_path) -> None:
    settings = tiny_settings(tmp_path)
    store = vision_store(settings, torch.device("cpu"), torch.float32)
    vm = store.get(None)
    direct = load_vision_model(TINY_SPECS[0], "cpu", torch.float32, tmp_path / "other")
    assert vm.info == direct.info
    for (k, v), (k2, v2) in zip(
        vm.model.state_dict().items(), direct.model.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2)
    assert store.get_at("tiny_vit", None) == (vm, vm.info.default_resolution)
    with pytest.raises(InvalidOption):
        store.get_at("tiny_vit", 33)  # not a multiple of the patch size


def test_text_store_loads_the_settings_models(tmp_path) -> None:
    settings = tiny_settings(tmp_path)
    store = text_store(settings, torch.device("cpu"))
    model = run_in_own_loop(lambda: store.get_async("tiny-bert"))
    direct = load_text_model(settings.models.text_specs()["tiny-bert"], torch.device("cpu"))
    text = "The animal did not cross the street."
    a, b = model.analyze(text, None), direct.analyze(text, None)
    assert a.blocks.keys() == b.blocks.keys()
    for kind in a.blocks:
        assert torch.allclose(torch.as_tensor(a.blocks[kind]), torch.as_tensor(b.blocks[kind]))
    store.close()


def test_the_api_answers_unknown_models_with_400_and_health_lists_loaded(client) -> None:
    r = client.post("/api/vision/analyze", data={"sample": "chelsea", "model": "nope"})
    assert r.status_code == 400 and "nope" in r.json()["detail"]
    r = client.post("/api/text/analyze", json={"text": "hi there", "model": "nope"})
    assert r.status_code == 400, r.text
    loaded = client.get("/api/health").json()["loaded_models"]
    assert "tiny_vit" in loaded and "tiny-bert" in loaded  # preloaded defaults
