"""Record post-softmax attention probabilities from timm ViT-family models.

timm's attention modules (``Attention``, BEiT/EVA variants) have a fused path that calls
``F.scaled_dot_product_attention``: the probabilities never exist there, so a hook on it sees nothing
(timm's own ``AttentionExtract`` then silently returns ``{}``). :func:`capture_attention` switches the
selected modules to their manual path for the duration of the ``with`` block, hooks the attention
dropout (whose input *is* softmax(QK^T / sqrt(d_k)) in eval mode), and restores both the hooks and
the fused/manual switch on exit, also when the forward raises.

Usage::

    with capture_attention(model) as rec:
        model.forward_features(x)
    rec.maps      # list of (B, H, N, N) tensors, one per block, in block order

For dataset statistics pass ``reduce=fn``: ``fn(block_index, probs)`` is called as each block runs
and nothing is kept, so memory stays at one block's map.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

DEFAULT_PATTERN = "*blocks.*.attn"


class CaptureError(RuntimeError):
    """Raised when attention probabilities cannot be recorded for some block."""


def find_attention_modules(model: nn.Module, pattern: str = DEFAULT_PATTERN) -> list[tuple[str, nn.Module]]:
    """Modules whose qualified name matches ``pattern`` (fnmatch) and that compute attention.

    A module qualifies when it has an ``attn_drop`` child (applied to the probabilities on the
    manual path). Matching modules without one raise :class:`CaptureError`: we never return an
    empty result silently.
    """
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        if not isinstance(getattr(module, "attn_drop", None), nn.Module):
            raise CaptureError(
                f"module {name!r} ({type(module).__name__}) matches {pattern!r} but has no attn_drop; "
                "its attention probabilities cannot be captured"
            )
        found.append((name, module))
    if not found:
        raise CaptureError(f"no attention modules match {pattern!r} in {type(model).__name__}")
    return found


@dataclass
class AttentionRecord:
    """What :func:`capture_attention` recorded: one list of tensors per block, per forward call."""

    names: list[str]
    _calls: list[list[torch.Tensor]] = field(default_factory=list)
    reduced: bool = False

    @property
    def maps(self) -> list[torch.Tensor]:
        """One (B, H, N, N) tensor per block; several forward calls are concatenated along B."""
        if self.reduced:
            raise CaptureError("maps were passed to the reduce callback and not kept")
        missing = [n for n, calls in zip(self.names, self._calls, strict=True) if not calls]
        if missing:
            raise CaptureError(
                f"no attention probabilities were recorded for {', '.join(missing)}: "
                "the forward pass did not go through their manual attention path"
            )
        counts = {len(calls) for calls in self._calls}
        if len(counts) != 1:
            raise CaptureError(f"blocks were called an unequal number of times: {sorted(counts)}")
        return [calls[0] if len(calls) == 1 else torch.cat(calls, dim=0) for calls in self._calls]

    def stacked(self) -> torch.Tensor:
        """All blocks stacked: (L, B, H, N, N)."""
        return torch.stack(self.maps, dim=0)


@contextmanager
def capture_attention(
    model: nn.Module,
    pattern: str = DEFAULT_PATTERN,
    reduce: Callable[[int, torch.Tensor], None] | None = None,
) -> Iterator[AttentionRecord]:
    """Record attention probabilities of every matching block while the context is open."""
    modules = find_attention_modules(model, pattern)
    record = AttentionRecord(names=[n for n, _ in modules], reduced=reduce is not None)
    record._calls = [[] for _ in modules]
    saved_fused: list[tuple[nn.Module, object]] = []
    handles = []

    def make_hook(index: int) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            probs = output.detach()
            if reduce is not None:
                reduce(index, probs)
                record._calls[index].append(probs.new_empty(0))  # marks the block as seen
            else:
                record._calls[index].append(probs)

        return hook

    try:
        for index, (_name, module) in enumerate(modules):
            if hasattr(module, "fused_attn"):
                saved_fused.append((module, module.fused_attn))
                module.fused_attn = False
            handles.append(module.attn_drop.register_forward_hook(make_hook(index)))
        yield record
    finally:
        for handle in handles:
            handle.remove()
        for module, value in saved_fused:
            module.fused_attn = value
    if reduce is not None:
        missing = [n for n, calls in zip(record.names, record._calls, strict=True) if not calls]
        if missing and any(record._calls):
            raise CaptureError(f"no attention probabilities were recorded for {', '.join(missing)}")
