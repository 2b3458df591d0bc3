"""What the vision page opens on: two measurements over the bundled sample photos.

- :func:`clustered_top_mass`: how much of a [CLS] attention map sits in compact bright regions. A map that
  follows an object puts its mass in a few neighbouring patches; a map of scattered specks puts it in isolated
  ones. The measure chooses the layer the page opens at (``bench/vision_first_look.py`` prints the table).
- :func:`patch_token_norms` and :func:`norm_ratio`: the norms of the output patch tokens. Darcet et al. 2023
  ("Vision Transformers Need Registers", Sec. 2) find artifact tokens with about 10x the norm of the others in
  large DINOv2 models; the page may call bright patches that only if a measurement on our model shows them.

Pure torch/numpy; the model comes in as a :class:`models.vision.analysis.VisionModel`.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

TOP_FRACTION = 0.10  # the share of the patches that counts as "the bright part" of a map


def clustered_top_mass(maps: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """(..., R, C) non-negative maps -> (...): the share of each map's mass held by its top ``fraction`` of
    patches that touch (8-neighbourhood) another top patch.

    Each map is first divided by its sum over the patches. With k = ceil(fraction * R * C), T is the set of
    the k largest patches (ties broken by index order); an isolated member of T counts for nothing. A uniform
    map scores about ``fraction``; one compact blob of k patches holding all the mass scores 1; k isolated
    specks holding all the mass score 0."""
    maps = np.asarray(maps, dtype=np.float64)
    *lead, rows, cols = maps.shape
    flat = maps.reshape(-1, rows * cols)  # (B, P)
    flat = flat / np.maximum(flat.sum(-1, keepdims=True), 1e-30)
    k = int(np.ceil(fraction * rows * cols))
    order = np.argsort(-flat, axis=-1, kind="stable")[:, :k]  # (B, k)
    top = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(top, order, True, axis=-1)
    top = top.reshape(-1, rows, cols)  # (B, R, C)
    pad = np.pad(top, ((0, 0), (1, 1), (1, 1)))
    neighbours = np.zeros_like(top, dtype=np.int32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                neighbours += pad[:, 1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols]
    kept = (top & (neighbours > 0)).reshape(flat.shape)  # (B, P)
    return (flat * kept).sum(-1).reshape(lead)


def layer_scores(cls_attention: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(L, H, P) [CLS] maps of one image -> (L,) :func:`clustered_top_mass` of each layer's head mean."""
    means = np.asarray(cls_attention, dtype=np.float64).mean(1)  # (L, P)
    return clustered_top_mass(means.reshape(means.shape[0], *grid))


@torch.inference_mode()
def patch_token_norms(vm, image: Image.Image, resolution: int | None = None) -> np.ndarray:
    """L2 norms of the last block's output patch tokens (before the final LayerNorm, as Darcet et al. 2023
    plot them): (P,) float32, prefix tokens left out."""
    x, _ = vm.prepare(image, resolution)
    model = vm.model
    out: list[torch.Tensor] = []
    handle = model.blocks[-1].register_forward_hook(lambda _m, _i, o: out.append(o))
    try:
        model.forward_features(x)
    finally:
        handle.remove()
    tokens = out[0][0, vm.info.num_prefix_tokens :].float()  # (P, D)
    return tokens.norm(dim=-1).cpu().numpy()


def norm_ratio(norms: np.ndarray) -> float:
    """The largest patch norm over the median one (registers-paper artifacts: about 10; none: near 1)."""
    norms = np.asarray(norms, dtype=np.float64)
    return float(norms.max() / np.median(norms))


def measure(vm, images: dict[str, Image.Image], resolution: int) -> dict:
    """Both measurements over ``images`` at one resolution: {"scores": {name: (L,)}, "mean": (L,),
    "layer": the 0-based layer of the highest mean score, "norm_ratios": {name: float}}."""
    from models.vision.analysis import analyze_image

    scores: dict[str, np.ndarray] = {}
    ratios: dict[str, float] = {}
    for name, image in images.items():
        a = analyze_image(vm, image, resolution)
        scores[name] = layer_scores(a.cls_attention, a.grid)
        ratios[name] = norm_ratio(patch_token_norms(vm, image, resolution))
    mean = np.mean(list(scores.values()), axis=0)  # (L,)
    return {"scores": scores, "mean": mean, "layer": int(mean.argmax()), "norm_ratios": ratios}
