"""EXPERIMENTAL: whole timm ViTs with the fused attention + distance kernel in place of SDPA.

Experimental: no GPU has run the kernel yet (:mod:`models.vision.fused_kernel`, docs/gpu.md); it is tested
on CPU in Triton's interpreter and against the materialised-softmax reference. No front door uses it.

:func:`fused_distance_attention` swaps each timm ``Attention`` block's forward for one that calls
:func:`models.vision.fused_kernel.mean_attention_distance_fused` in place of
``F.scaled_dot_product_attention`` (same output, plus per-layer mean attention distance sums in a
:class:`FusedDistanceRecord`, the same running sums as :class:`models.vision.mad.DistanceAccumulator`), and
restores the blocks on exit. ``bench/gpu_fused.py`` times it against the plain fused forward.

The kernel's names are re-exported here (``from models.vision.fused_distance import ...`` keeps working).
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from models.vision.capture import DEFAULT_PATTERN, CaptureError, find_attention_modules
from models.vision.fused_kernel import (  # noqa: F401 (re-exported: the kernel's public names)
    BACKENDS,
    Backend,
    FusedDistance,
    interpreter_active,
    mean_attention_distance_fused,
    mean_attention_distance_reference,
    resolve_backend,
)
from models.vision.mad import HeadSums, Unit

# ----------------------------------------------------------------------------------------------------------
# Whole models: timm Attention blocks with the fused kernel in place of scaled_dot_product_attention


class FusedDistanceRecord(HeadSums):
    """Per-(layer, head) MAD sums over images, kept on the device: the running sums of
    :class:`models.vision.mad.HeadSums` (shared with ``DistanceAccumulator``), one layer per patched block."""

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = names

    def head_sums(self, layer: int, heads: int, device: torch.device) -> torch.Tensor:
        """The (H,) float64 running sum of ``layer``, for the kernel to add to in place."""
        return self.sums(layer, heads, device)

    def result(self) -> np.ndarray:
        """(L, H) float64: the mean over the images seen, per layer and head (as ``DistanceAccumulator``).

        Raises :class:`CaptureError` naming the blocks that recorded nothing or saw unequal images."""
        missing = [n for i, n in enumerate(self.names) if i not in self._sums]
        if missing:
            raise CaptureError(f"no distances were recorded for {', '.join(missing)}")
        try:
            return super().result()
        except ValueError as e:
            raise CaptureError(str(e)) from e


def _is_plain_timm_attention(module: nn.Module) -> bool:
    try:
        from timm.models.vision_transformer import Attention
    except ImportError:  # pragma: no cover
        return False
    return type(module).forward is Attention.forward and hasattr(module, "qkv") and hasattr(module, "proj")


@contextmanager
def fused_distance_attention(
    model: nn.Module,
    grid: tuple[int, int],
    patch_px: int,
    num_prefix: int,
    *,
    renormalize: bool = False,
    unit: Unit = "pixels",
    backend: Backend = "auto",
    pattern: str = DEFAULT_PATTERN,
) -> Iterator[FusedDistanceRecord]:
    """While open, each matching timm ``Attention`` computes its output with the fused kernel and adds its
    (B, H) mean attention distance to the yielded record; the model's outputs are unchanged (up to the
    kernel's rounding). Blocks of other attention classes raise :class:`CaptureError` (we do not guess
    their forward). The original forwards are restored on exit, also when the forward raises."""
    modules = find_attention_modules(model, pattern)
    for name, module in modules:
        if not _is_plain_timm_attention(module):
            raise CaptureError(f"module {name!r} ({type(module).__name__}) is not timm's plain Attention")
    record = FusedDistanceRecord([n for n, _ in modules])

    def make_forward(index: int):
        def forward(
            self: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
        ) -> torch.Tensor:
            if attn_mask is not None or is_causal:
                raise CaptureError("fused distance attention takes no attention mask")
            if self.training and self.attn_drop.p > 0:
                raise CaptureError("fused distance attention has no attention dropout: call model.eval()")
            b, n, _ = x.shape
            h, dim = self.num_heads, self.head_dim
            gate = self.gate(x).sigmoid() if getattr(self, "gate", None) is not None else None
            qkv = self.qkv(x).reshape(b, n, 3, h, dim).permute(2, 0, 3, 1, 4)  # (3, B, H, N, D)
            q, k, v = qkv.unbind(0)  # (B, H, N, D) each, strided views
            q, k = self.q_norm(q), self.k_norm(k)
            in_kernel = resolve_backend(backend, q.device) != "torch"  # kernels add to the sums themselves
            res = mean_attention_distance_fused(
                q,
                k,
                grid,
                patch_px,
                num_prefix,
                v,
                scale=self.scale,
                renormalize=renormalize,
                unit=unit,
                backend=backend,
                head_sums=record.head_sums(index, h, q.device) if in_kernel else None,
            )
            if in_kernel:
                record.count(index, b)
            else:
                record.add(index, res.mad)
            y = res.out.transpose(1, 2).reshape(b, n, h * dim)  # (B, N, H*D), free for the kernel's layout
            y = self.norm(y) if hasattr(self, "norm") else y
            if gate is not None:
                y = y * gate
            return self.proj_drop(self.proj(y))

        return forward

    patched: list[nn.Module] = []
    try:
        for index, (_name, module) in enumerate(modules):
            module.forward = types.MethodType(make_forward(index), module)
            patched.append(module)
        yield record
    finally:
        for module in patched:
            del module.forward  # back to the class's forward
