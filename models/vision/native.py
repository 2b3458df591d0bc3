"""Attention maps recomputed from the residual stream: how a DINOv2 analysis (224, 448, 518 px) is stored.

A DINOv2 ViT-S/14 analysis at 518 px has N = 37 * 37 + 1 = 1,370 tokens; its (L, H, N, N) maps are
12 * 6 * 1,370^2 float16 = 270 MB (151 MB at 448 px). Instead the analysis keeps the residual stream as
float16, the tokens entering block 0 (``embed``, (N, D)) and leaving every block (``hidden``, (L, N, D)):
13 * 1,370 * 384 * 2 = 13.7 MB at 518 px (10.2 MB at 448), the array the features, similarity and norm views
read too (docs/native-resolution.md). Block l's probabilities are a pure
function of its input x_l and the block's own weights (timm ``Block``: ``attn(norm1(x))``):

    A_l = softmax(q k^T * scale) per head,  q, k = split(qkv(norm1(x_l))),  q_norm / k_norm applied

:class:`AttentionWeights` holds, per block, references to the model's ``norm1``, ``qkv``, ``q_norm`` and
``k_norm`` modules (CPU float32 copies when the model lives on a GPU or in another dtype), so it costs the
analysis nothing: the cache counts only the float16 stream.

- :func:`query_rows` answers a clicked patch for every layer and head: one query row per (layer, head).
  With identity q_norm / k_norm, q_i k_j = norm1(x)_j . (W_k,h^T q_i,h) + b_k,h . q_i,h, so each layer
  costs one (N, D) @ (D, H) product instead of projecting every key: 12 * 1,370 * 384 * 6 = 38 M
  multiply-adds at 518 px (bench/vision.py measures it).
- :func:`layer_maps` recomputes one layer's (H, N, N) float32 probabilities (the views that need every
  row: rollout with options, entropy, statistics), one layer at a time: 4 H N^2 bytes, 45 MB at 518 px.

Precision: the stream is stored in float16, so a recomputed probability differs from the float32 forward's
by the float16 rounding of the inputs propagated through norm1, qkv and softmax: measured on the astronaut
photo at 518 px (every row of layers 1, 6, 12), at most 1.3e-3 absolute (a float16 copy of the maps: 2.4e-4);
tests/models/test_native.py holds every row to 2e-3 absolute against the float32 maps.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BlockWeights:
    """What recomputing one block's attention needs (modules of the model, or CPU float32 copies)."""

    norm: nn.Module  # norm1
    qkv: nn.Linear
    q_norm: nn.Module
    k_norm: nn.Module
    num_heads: int
    scale: float

    @property
    def plain(self) -> bool:
        """q_norm and k_norm are identities: keys can be folded into the query (see :func:`query_rows`)."""
        return isinstance(self.q_norm, nn.Identity) and isinstance(self.k_norm, nn.Identity)


@dataclass(frozen=True, eq=False)
class AttentionWeights:
    """Per block, what :func:`layer_maps` and :func:`query_rows` need; one instance per loaded model."""

    model_id: str
    blocks: tuple[BlockWeights, ...]

    def __reduce__(self):  # Ray / pickle: the weights travel once per process, interned by model id
        return (_interned, (self.model_id, self.blocks))


_INTERNED: weakref.WeakValueDictionary[str, AttentionWeights] = weakref.WeakValueDictionary()
_BY_MODEL: weakref.WeakKeyDictionary[nn.Module, AttentionWeights] = weakref.WeakKeyDictionary()


def _interned(model_id: str, blocks: tuple[BlockWeights, ...]) -> AttentionWeights:
    found = _INTERNED.get(model_id)
    if found is None:
        found = AttentionWeights(model_id, blocks)
        _INTERNED[model_id] = found
    return found


def supports_recompute(model: nn.Module) -> bool:
    """True when every block is a timm ``Block`` whose ``attn`` has ``qkv``, ``q_norm``, ``k_norm``."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or len(blocks) == 0:
        return False
    for blk in blocks:
        attn = getattr(blk, "attn", None)
        if not all(hasattr(attn, n) for n in ("qkv", "q_norm", "k_norm", "num_heads", "scale")):
            return False
        if not isinstance(attn.qkv, nn.Linear) or not hasattr(blk, "norm1"):
            return False
    return True


def attention_weights(model: nn.Module, model_id: str) -> AttentionWeights:
    """The model's :class:`AttentionWeights`, made once per model (references when it is CPU float32)."""
    found = _BY_MODEL.get(model)
    if found is not None:
        return found
    blocks = []
    for blk in model.blocks:
        attn = blk.attn
        mods = [blk.norm1, attn.qkv, attn.q_norm, attn.k_norm]
        param = next(attn.qkv.parameters())
        if param.device.type != "cpu" or param.dtype != torch.float32:
            import copy

            mods = [copy.deepcopy(m).to("cpu", torch.float32) for m in mods]
        blocks.append(BlockWeights(*mods, num_heads=int(attn.num_heads), scale=float(attn.scale)))
    found = AttentionWeights(model_id, tuple(blocks))
    _BY_MODEL[model] = found
    return found


def _qk(w: BlockWeights, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) block input -> q, k (H, N, d) float32, as the block computes them.

    The modules are the model's own, which another thread's forward may be hooking at this moment (attention
    capture, value norms): ``.forward`` runs them without their hooks, so a recomputation never fires (or
    feeds) a concurrent analysis's hooks."""
    h = w.norm.forward(x.float())  # (N, D)
    n, dim = h.shape
    qkv = w.qkv.forward(h).reshape(n, 3, w.num_heads, dim // w.num_heads).permute(1, 2, 0, 3)  # (3, H, N, d)
    return w.q_norm.forward(qkv[0]), w.k_norm.forward(qkv[1])


def layer_maps(w: BlockWeights, x: torch.Tensor) -> torch.Tensor:
    """(N, D) input of the block -> its (H, N, N) float32 attention probabilities."""
    with torch.inference_mode():
        q, k = _qk(w, x)
        return torch.softmax((q * w.scale) @ k.transpose(-2, -1), dim=-1)  # (H, N, N)


def block_query_rows(w: BlockWeights, x: torch.Tensor, token: int) -> torch.Tensor:
    """(N, D) input of the block, a token index -> that query's (H, N) float32 probabilities over all keys."""
    with torch.inference_mode():
        if not w.plain:
            q, k = _qk(w, x)
            return torch.softmax((q[:, token : token + 1] * w.scale) @ k.transpose(-2, -1), dim=-1)[:, 0]
        h = w.norm.forward(x.float())  # (N, D), without hooks (see _qk)
        n, dim = h.shape
        d = dim // w.num_heads
        weight, bias = w.qkv.weight, w.qkv.bias  # (3D, D), (3D,)
        q = torch.nn.functional.linear(h[token], weight[:dim], None if bias is None else bias[:dim])  # (D,)
        q = q.reshape(w.num_heads, d) * w.scale  # (H, d)
        wk = weight[dim : 2 * dim].reshape(w.num_heads, d, dim)  # (H, d, D)
        u = torch.einsum("hd,hdk->kh", q, wk)  # (D, H): W_k,h^T q_h
        logits = h @ u  # (N, H)
        if bias is not None:
            logits = logits + (bias[dim : 2 * dim].reshape(w.num_heads, d) * q).sum(-1)  # + b_k,h . q_h
        return torch.softmax(logits.T, dim=-1)  # (H, N)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the enclosed torch ops on this thread alone, then restore its thread count. A clicked patch is
    ~100 small ops on (N, D) arrays: on a busy 2-core CPU, waking a second intra-op thread per op costs
    more than the op (measured: 21 ms with one thread, 150+ ms with two while other work runs)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def query_rows(weights: AttentionWeights, inputs: Sequence[torch.Tensor], token: int) -> torch.Tensor:
    """L block inputs, each (N, D) -> (L, H, N) float32: token ``token``'s attention row in every layer and
    head (:func:`block_query_rows` per block, on one thread)."""
    with one_thread():
        return torch.stack([block_query_rows(w, inputs[i], token) for i, w in enumerate(weights.blocks)])


class StreamRecord:
    """What :func:`capture_stream` recorded: the tokens entering block 0 and leaving every block."""

    def __init__(self, num_blocks: int) -> None:
        self.embed: torch.Tensor | None = None  # (B, N, D)
        self.outputs: list[torch.Tensor | None] = [None] * num_blocks  # L x (B, N, D)

    def image(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``b``'s (N, D) block-0 input and (L, N, D) block outputs, each in its own memory."""
        if self.embed is None or any(o is None for o in self.outputs):
            raise RuntimeError("the forward pass did not run every block")
        return self.embed[b].clone(), torch.stack([o[b] for o in self.outputs])


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """float16 on the CPU (one copy, no extra device sync); float32 when a value overflows float16."""
    host = t.detach().to("cpu", torch.float16)
    if torch.isinf(host).any() and not torch.isinf(t).any():
        return t.detach().to("cpu", torch.float32)
    return host


class capture_stream:  # noqa: N801 - a context manager used like a function
    """Record the residual stream of ``model.blocks`` during a forward (``with capture_stream(m) as rec``)."""

    def __init__(self, model: nn.Module) -> None:
        self.blocks = list(model.blocks)
        self.record = StreamRecord(len(self.blocks))
        self.handles: list = []

    def __enter__(self) -> StreamRecord:
        rec = self.record

        def pre(_m: nn.Module, args: tuple) -> None:
            rec.embed = _to_host(args[0])

        def post(index: int):
            def hook(_m: nn.Module, _args: tuple, out: torch.Tensor) -> None:
                rec.outputs[index] = _to_host(out)

            return hook

        self.handles.append(self.blocks[0].register_forward_pre_hook(pre))
        self.handles += [blk.register_forward_hook(post(i)) for i, blk in enumerate(self.blocks)]
        return rec

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
