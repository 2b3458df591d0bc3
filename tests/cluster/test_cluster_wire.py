"""A vision analysis crosses Ray with its (L, H, N, N) maps as a numpy buffer (app/cluster/deployments.py
``send_analyses_zero_copy``): the fields come back equal, the maps are a tensor over the received buffer, and
through a real actor the analysis arrives whole. tests/cluster/test_cluster_serve.py checks the maps served
through Serve against the local app."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("ray.serve", reason="Ray is a dev requirement (requirements-ray.txt)")

import ray  # noqa: E402

from app.cluster.deployments import analysis_from_wire, analysis_to_wire, send_analyses_zero_copy  # noqa: E402
from app.cluster.loopback import init_ray  # noqa: E402
from models.vision.analysis import VisionAnalysis, analyze_image, load_vision_model  # noqa: E402
from tests.factories import photo, tiny_vit_spec  # noqa: E402


@pytest.fixture(scope="module")
def analysis(tmp_path_factory) -> VisionAnalysis:
    vm = load_vision_model(tiny_vit_spec(), torch.device("cpu"), torch.float32, tmp_path_factory.mktemp("m"))
    return analyze_image(vm, photo(3, 40))


def assert_equal(a: VisionAnalysis, b: VisionAnalysis) -> None:
    assert isinstance(b.attentions, torch.Tensor) and b.attentions.dtype == a.attentions.dtype
    assert torch.equal(a.attentions, b.attentions)
    np.testing.assert_array_equal(a.cls_attention, b.cls_attention)
    np.testing.assert_array_equal(a.rollout, b.rollout)
    assert (a.model_id, a.resolution, a.grid, a.num_prefix_tokens, a.predictions, a.has_cls) == (
        b.model_id, b.resolution, b.grid, b.num_prefix_tokens, b.predictions, b.has_cls,
    )  # fmt: skip
    assert a.image.tobytes() == b.image.tobytes()
    assert torch.equal(a.hidden, b.hidden) and torch.equal(a.features, b.features)  # the residual stream
    np.testing.assert_array_equal(a.token_norms, b.token_norms)
    np.testing.assert_array_equal(a.patch_attention(0, None, 1), b.patch_attention(0, None, 1))


def test_wire_form_round_trips_without_copying_the_maps(analysis) -> None:
    fields = analysis_to_wire(analysis)
    assert isinstance(fields["attentions"], np.ndarray) and fields["attentions"].dtype == np.float16
    fields["attentions"] = fields["attentions"].copy()
    fields["attentions"].flags.writeable = False  # as Ray hands it over: the object store's buffer
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not writable" warning either
        back = analysis_from_wire(fields)
    assert back.attentions.data_ptr() == fields["attentions"].ctypes.data  # a view, not a copy
    assert_equal(analysis, back)


@ray.remote(num_cpus=0)
class Sender:
    """A replica's side: registers the wire form, then returns the analysis it was given."""

    def __init__(self, blob: bytes) -> None:
        import pickle

        send_analyses_zero_copy()
        self.analysis = pickle.loads(blob)

    def get(self) -> VisionAnalysis:
        return self.analysis


def test_an_analysis_returned_by_an_actor_arrives_whole(analysis, monkeypatch) -> None:
    import pickle

    from app.cluster import deployments

    received = []

    def counting_from_wire(fields):  # Ray ships the deserializer by reference: this one runs here
        received.append(type(fields["attentions"]))
        return analysis_from_wire(fields)

    monkeypatch.setattr(deployments, "analysis_from_wire", counting_from_wire)

    # maps over Ray's inline limit (100 KB), so that they travel through the object store as a 448 px map does
    big = dataclasses.replace(analysis, attentions=torch.rand(3, 4, 120, 120).half())
    init_ray(num_cpus=1, log_to_driver=False)
    try:
        sender = Sender.remote(pickle.dumps(big))
        back = ray.get(sender.get.remote(), timeout=120)
        assert torch.equal(big.attentions, back.attentions)
        assert back.model_id == big.model_id and back.grid == big.grid
        assert received == [np.ndarray]  # it came in the wire form, the maps as a numpy buffer
    finally:
        ray.shutdown()
