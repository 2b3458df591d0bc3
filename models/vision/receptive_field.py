"""Theoretical receptive field of a CNN by depth, the reference line for ViT mean attention distance.

ViT paper (Dosovitskiy et al. 2021) Section 4.5 / Fig. 7 right compares attention distance to "receptive
field size in CNNs". For a chain of convolutions / poolings with kernel k, stride s, dilation d the
receptive field r (pixels of the input one output unit sees) and the jump j (input pixels between
neighbouring output units) follow the standard recurrence, starting from r = j = 1 at the input:

    r_out = r_in + (k - 1) * d * j_in,        j_out = j_in * s

Only the longest path counts: in a residual block that is the main branch (the 1x1 downsample shortcut
never grows r), so shortcuts are skipped.

ResNet-50 here is torchvision / timm's "v1.5": stem conv 7x7/2, max-pool 3x3/2, bottlenecks
(1x1, 3x3, 1x1) in stages of [3, 4, 6, 3] blocks, the stage's stride on the 3x3 conv of its first block.
:func:`resnet50_layers` writes that architecture out explicitly (no model instance needed);
``tests/test_distance.py`` checks it equals what :func:`layers_from_resnet` reads from
``timm.create_model("resnet50")``'s modules. The final theoretical receptive field is 427 px.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

RESNET50_BLOCKS = (3, 4, 6, 3)


@dataclass(frozen=True)
class ConvLayer:
    """One layer on the longest path: name, kernel, stride, dilation; ``weighted`` counts toward depth."""

    name: str
    kernel: int
    stride: int = 1
    dilation: int = 1
    weighted: bool = True  # conv (True) or pooling (False)


class LayerRF(NamedTuple):
    """Receptive field after a layer: (name, depth_index, rf_pixels); depth counts weighted layers."""

    name: str
    depth_index: int
    rf_pixels: int


def receptive_fields(layers: list[ConvLayer]) -> list[tuple[int, int]]:
    """(receptive field px, jump px) after each layer, by the recurrence in the module docstring."""
    r, j = 1, 1
    out = []
    for layer in layers:
        r = r + (layer.kernel - 1) * layer.dilation * j
        j = j * layer.stride
        out.append((r, j))
    return out


def resnet50_layers() -> list[ConvLayer]:
    """ResNet-50 v1.5's longest path, written out from the architecture (see module docstring)."""
    layers = [ConvLayer("conv1", 7, 2), ConvLayer("maxpool", 3, 2, weighted=False)]
    for stage, blocks in enumerate(RESNET50_BLOCKS, start=1):
        for block in range(blocks):
            stride = 2 if stage > 1 and block == 0 else 1
            prefix = f"layer{stage}.{block}"
            layers += [
                ConvLayer(f"{prefix}.conv1", 1),
                ConvLayer(f"{prefix}.conv2", 3, stride),
                ConvLayer(f"{prefix}.conv3", 1),
            ]
    return layers


def _pair(v) -> int:
    """Square kernels/strides only: (k, k) -> k."""
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"non-square kernel/stride/dilation {v} is not supported")
        return int(v[0])
    return int(v)


def layers_from_resnet(model: nn.Module) -> list[ConvLayer]:
    """Read the longest path from a timm/torchvision ResNet instance: stem, max-pool, blocks' convs.

    Walks modules in registration order (which is forward order for these ResNets), takes Conv2d and
    MaxPool2d/AvgPool2d layers, and skips everything under a ``downsample`` shortcut.
    """
    layers = []
    for name, module in model.named_modules():
        if "downsample" in name.split("."):
            continue
        if isinstance(module, nn.Conv2d):
            layers.append(
                ConvLayer(name, _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation))
            )
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            dilation = _pair(getattr(module, "dilation", 1))
            layers.append(
                ConvLayer(name, _pair(module.kernel_size), _pair(module.stride), dilation, weighted=False)
            )
    if not layers:
        raise ValueError(f"no conv or pooling layers found in {type(model).__name__}")
    return layers


def layer_receptive_fields(layers: list[ConvLayer]) -> list[LayerRF]:
    """Name, depth index (number of weighted layers so far, 1-based) and receptive field of each layer."""
    out, depth = [], 0
    for layer, (r, _j) in zip(layers, receptive_fields(layers), strict=True):
        depth += int(layer.weighted)
        out.append(LayerRF(layer.name, depth, r))
    return out


def resnet50_receptive_fields() -> list[LayerRF]:
    """ResNet-50 v1.5: (name, depth_index 1..49, receptive field px) for every layer on the longest path."""
    return layer_receptive_fields(resnet50_layers())


def on_vit_depth_axis(rfs: list[LayerRF], num_vit_layers: int) -> list[tuple[float, int]]:
    """Put CNN receptive fields on a ViT's layer axis by *relative depth*.

    A CNN layer at depth d of D weighted layers sits at relative depth d / D in (0, 1]; ViT block l
    (0-based, as the distance CSV numbers it) sits at (l + 1) / L. So the CNN point goes at
    x = d / D * L - 1 on the ViT's 0-based layer axis: the CNN's last conv lines up with the ViT's last
    block and its first conv near the ViT's first. Relative depth, not absolute layer count, because a
    49-conv ResNet and a 12-block ViT differ 4x in depth but both run input to output. Pooling layers
    share the depth of the conv before them. Returns (x, rf_pixels) per layer.
    """
    if num_vit_layers < 1:
        raise ValueError(f"num_vit_layers must be >= 1, not {num_vit_layers}")
    total = max(rf.depth_index for rf in rfs)
    return [(rf.depth_index / total * num_vit_layers - 1.0, rf.rf_pixels) for rf in rfs]
