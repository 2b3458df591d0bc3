"""Record the residual stream (each block's output tokens) of a timm ViT-family model during its forward.

The features, similarity and norms views (``features.py``, ``norms.py``) read what a block *writes*: the
token vectors after block l, x_l = x_{l-1} + attn(...) + mlp(...), shape (B, N, D), one per block. A forward
hook on every block of ``model.blocks`` sees them as they are made; :func:`capture_hidden` keeps each as a
float16 CPU copy (what the views need) and, from the float32 tensor, the (B, N) Euclidean norm of every token,
so the norms page never reads rounded values. The last layer *after the final norm* (what DINOv2's Fig. 1 PCA
uses) is ``forward_features``' own output and needs no hook.

Usage::

    with capture_hidden(model) as rec:
        feats = model.forward_features(x)      # (B, N, D), after the final norm
    rec.hidden(0)   # (L, N, D) float16 for image 0
    rec.norms(0)    # (L, N) float32 token norms of image 0, from the float32 residual stream

Memory: L * N * D * 2 bytes per image (12 x 1,025 x 384 x 2 = 9.4 MB for DINOv2 ViT-S/14 at 448 px,
12.6 MB at 518 px) plus L * N * 4 for the norms.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


class HiddenCaptureError(RuntimeError):
    """Raised when the model has no ``blocks`` to hook or a block did not run."""


def find_blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks, bottom first: ``model.blocks`` (timm ViT, DeiT, BEiT, EVA)."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Module) or len(list(blocks.children())) == 0:
        raise HiddenCaptureError(f"{type(model).__name__} has no .blocks to read the residual stream from")
    return list(blocks.children())


@dataclass
class HiddenRecord:
    """What :func:`capture_hidden` recorded: per block, the float16 tokens and float32 norms (B rows each)."""

    num_blocks: int
    _hidden: list[list[torch.Tensor]] = field(default_factory=list)  # L x calls x (B, N, D) float16 CPU
    _norms: list[list[torch.Tensor]] = field(default_factory=list)  # L x calls x (B, N) float32 CPU

    def _check(self) -> None:
        missing = [i for i, calls in enumerate(self._hidden) if not calls]
        if missing:
            raise HiddenCaptureError(f"blocks {missing} did not run during the forward pass")

    def all_hidden(self) -> torch.Tensor:
        """(B, L, N, D) float16: every image's residual stream after each block."""
        self._check()
        per_block = [torch.cat(calls, dim=0) for calls in self._hidden]  # L x (B, N, D)
        return torch.stack(per_block, dim=1)

    def all_norms(self) -> torch.Tensor:
        """(B, L, N) float32: each token's L2 norm after each block, from the float32 stream."""
        self._check()
        per_block = [torch.cat(calls, dim=0) for calls in self._norms]  # L x (B, N)
        return torch.stack(per_block, dim=1)

    def hidden(self, b: int = 0) -> torch.Tensor:
        """(L, N, D) float16 of image ``b``."""
        return self.all_hidden()[b].clone()

    def norms(self, b: int = 0) -> torch.Tensor:
        """(L, N) float32 of image ``b``."""
        return self.all_norms()[b].clone()


@contextmanager
def capture_hidden(model: nn.Module, keep_hidden: bool = True) -> Iterator[HiddenRecord]:
    """Hook every block's output while the context is open; hooks are removed on exit, also on errors.

    ``keep_hidden=False`` keeps only the norms (L * N floats per image), for dataset statistics."""
    blocks = find_blocks(model)
    record = HiddenRecord(num_blocks=len(blocks))
    record._hidden = [[] for _ in blocks]
    record._norms = [[] for _ in blocks]

    def make_hook(index: int):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            out = output[0] if isinstance(output, tuple) else output  # (B, N, D)
            out = out.detach()
            record._norms[index].append(out.float().norm(dim=-1).cpu())  # (B, N)
            if keep_hidden:
                record._hidden[index].append(out.to("cpu", torch.float16))  # (B, N, D)
            else:
                record._hidden[index].append(out.new_empty(0))

        return hook

    handles = [block.register_forward_hook(make_hook(i)) for i, block in enumerate(blocks)]
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()
