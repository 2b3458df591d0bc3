"""Value-weighted attention (Kobayashi et al., EMNLP 2020, "Attention is Not Only a Weight"): the math.

A multi-head attention sublayer writes, for query i, the sum over heads h and keys j of
α_ij^h · f_h(x_j) (plus the output bias b_O), with f_h(x) = (x W_V^h + b_V^h) W_O^h: the head's value, sent
through its slice of the output projection (Kobayashi et al. 2020, Section 3). The paper measures
‖α_ij f_h(x_j)‖ instead of α_ij. Since α_ij ≥ 0, ‖α_ij f_h(x_j)‖ = α_ij · ‖f_h(x_j)‖, so one forward needs to
keep only the (L, H, N) norms ‖f_h(x_j)‖; every value-weighted map is α · norms[None, :] (one factor per key
column), built on demand.

Conventions, said once here and repeated by every caption:

- the output bias b_O is shared by the heads and does not depend on j: it is left out of f_h, as in the
  paper's decomposition;
- where the sublayer's output is scaled before the residual sum (timm's LayerScale ``ls1``, DINOv2 and
  CaiT: x + γ ⊙ Attn(x)), γ belongs to f_h: f_h(x) = γ ⊙ ((x W_V^h + b_V^h) W_O^h), since γ scales what each
  head adds to the residual stream;
- nothing after the residual sum (a post-norm LayerNorm, BERT's and the paper Transformer's) is in f_h: the
  2020 paper's measure stops at the attention output (their 2021 follow-up adds the LayerNorm).

Pure torch/numpy: :func:`head_value_norms` (the norms from captured values and W_O),
:func:`record_value_norms` (hooks that compute them during a forward), :func:`value_weighted` (the map) and
:func:`special_share` (per head, how much of the attention on special tokens survives value weighting).
Model-specific sites live in ``models/vision/value_norms.py`` and ``models/text/value_norms.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

CAPTION = (
    "Value-weighted attention (Kobayashi et al. 2020, Section 3): ‖α_ij f_h(x_j)‖ = α_ij ‖f_h(x_j)‖ with "
    "f_h(x) = (x W_V^h + b_V^h) W_O^h; the shared output bias b_O is left out, as in the paper."
)


def head_value_norms(v: Tensor, w_o: Tensor, n_heads: int, gamma: Tensor | None = None) -> Tensor:
    """‖f_h(x_j)‖ for every head and token: (B, H, N) float32.

    ``v`` (B, N, H * d): the value projection's output x W_V + b_V, heads side by side (head h in columns
    h*d .. (h+1)*d); ``w_o`` (D, H * d): the output projection's weight as ``nn.Linear`` stores it (out, in),
    so head h's slice is ``w_o[:, h*d:(h+1)*d]``; ``gamma`` (D,): a LayerScale applied to the sublayer output.

    f_h(x_j) is never formed: with the QR factorisation γ ⊙ W_O^h = Q_h R_h (Q_h's columns orthonormal),
    ‖f_h(x_j)‖ = ‖R_h v_h(x_j)‖, which costs N·H·d² instead of N·H·d·D (1/H of the output projection). The
    tests compare it with the full vector product.
    """
    b, n, hd = v.shape
    d = hd // n_heads
    if d * n_heads != hd or w_o.shape[1] != hd:
        raise ValueError(f"values (.., {hd}) and W_O {tuple(w_o.shape)} do not split into {n_heads} heads")
    r = _r_factor(w_o, n_heads, gamma)  # (H, d, d)
    vh = v.float().reshape(b, n, n_heads, d)  # (B, N, H, d)
    y = torch.einsum("bnhd,hed->bhne", vh, r)  # (B, H, N, d): R_h v_h(x_j), same norm as f_h(x_j)
    return torch.linalg.vector_norm(y, dim=-1)  # (B, H, N)


_R_CACHE: OrderedDict[tuple, Tensor] = OrderedDict()
_R_CACHE_SIZE = 256  # one entry per attention sublayer and weight version: a few models' worth


def _r_factor(w_o: Tensor, n_heads: int, gamma: Tensor | None) -> Tensor:
    """R_h of γ ⊙ W_O^h = Q_h R_h for every head: (H, d, d) float32 on w_o's device. W_O^h = Q R with orthonormal
    Q, so ‖W_O^h v‖ = ‖R v‖. The QR (float64) is cached per weight tensor, version and contents' sums, so a
    forward pays for it once per weight state, not once per call."""
    key = (w_o.data_ptr(), w_o._version, tuple(w_o.shape), w_o.device, n_heads, float(w_o.detach().sum()))
    if gamma is not None:
        key += (gamma.data_ptr(), gamma._version, float(gamma.detach().sum()))
    r = _R_CACHE.get(key)
    if r is None:
        d = w_o.shape[1] // n_heads
        wh = w_o.detach().double().reshape(w_o.shape[0], n_heads, d).transpose(0, 1)  # (H, D, d): W_O^h
        if gamma is not None:
            wh = wh * gamma.detach().double()[None, :, None]  # LayerScale: γ ⊙ f_h(x_j)
        r = torch.linalg.qr(wh, mode="r").R.to(torch.float32)  # (H, d, d)
        _R_CACHE[key] = r
        while len(_R_CACHE) > _R_CACHE_SIZE:
            _R_CACHE.popitem(last=False)
    return r


@dataclass(frozen=True)
class ValueSite:
    """One attention sublayer whose value norms a forward hook computes.

    ``module``: the module whose forward output holds the values; ``values(output)`` -> (B, N, H * d);
    ``w_o()`` -> (D, H * d) in ``nn.Linear`` layout; ``gamma()`` -> (D,) or None (read at call time, so the
    hook always sees the current weights). ``kind`` and ``layer`` say where the norms go."""

    kind: str
    layer: int
    module: nn.Module
    n_heads: int
    values: Callable[[Tensor], Tensor]
    w_o: Callable[[], Tensor]
    gamma: Callable[[], Tensor | None] = lambda: None


@dataclass
class ValueNormRecord:
    """What :func:`record_value_norms` kept: the last call's (B, H, N) norms per site, in site order."""

    sites: Sequence[ValueSite]
    norms: list[Tensor | None] = field(default_factory=list)

    def complete(self) -> bool:
        return bool(self.sites) and all(n is not None for n in self.norms)

    def stacked(self, kind: str | None = None) -> Tensor:
        """(L, B, H, N) float32 on the CPU: the sites of ``kind`` (all sites if None) in layer order."""
        picked = sorted(
            ((s.layer, n) for s, n in zip(self.sites, self.norms, strict=True) if kind in (None, s.kind)),
            key=lambda t: t[0],
        )
        if not picked or any(n is None for _, n in picked):
            raise RuntimeError(f"no value norms were recorded for {kind or 'every'} attention site")
        return torch.stack([n for _, n in picked]).cpu()  # (L, B, H, N)

    def by_kind(self) -> dict[str, np.ndarray]:
        """``{kind: (L, H, N) float32}`` of the first batch item, per attention kind."""
        kinds = list(dict.fromkeys(s.kind for s in self.sites))
        return {k: self.stacked(k)[:, 0].numpy() for k in kinds}


@contextmanager
def record_value_norms(sites: Sequence[ValueSite]) -> Iterator[ValueNormRecord]:
    """Hook every site's value module while the context is open; each call overwrites that site's norms, so
    after a generate loop followed by one full forward the record holds the full forward's norms."""
    record = ValueNormRecord(sites, [None] * len(sites))
    handles = []

    def make_hook(index: int, site: ValueSite) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            with torch.no_grad():
                v = site.values(output.detach())  # (B, N, H * d)
                record.norms[index] = head_value_norms(v, site.w_o().detach(), site.n_heads, _gamma(site))

        return hook

    try:
        for index, site in enumerate(sites):
            handles.append(site.module.register_forward_hook(make_hook(index, site)))
        yield record
    finally:
        for handle in handles:
            handle.remove()


def _gamma(site: ValueSite) -> Tensor | None:
    g = site.gamma()
    return None if g is None else g.detach()


def value_weighted(attn: np.ndarray, norms: np.ndarray, renormalise: bool = True) -> np.ndarray:
    """α_ij ‖f(x_j)‖ for maps ``attn`` (..., Tq, Tk) and norms (..., Tk) (one per key column), float32.

    ``renormalise``: divide each row by its sum, so a row is the share of the value-weighted mass that
    each key brings (a row of zeros stays zero). Without it, the values are the vector norms themselves."""
    out = np.asarray(attn, np.float32) * np.asarray(norms, np.float32)[..., None, :]  # (..., Tq, Tk)
    if renormalise:
        total = out.sum(-1, keepdims=True)  # (..., Tq, 1)
        out = np.divide(out, total, out=np.zeros_like(out), where=total > 0)
    return out


@dataclass(frozen=True)
class SpecialShare:
    """Per head, the attention mass on the chosen keys before and after value weighting.

    ``attention`` and ``weighted`` are (L, H): the mean over query rows of the share of each row's mass on the
    chosen keys, in α and in the renormalised α·‖f‖; ``survives = weighted / attention`` (NaN where the
    attention share is 0): 1 = the norms change nothing, 0.1 = a tenth of that attention carries over."""

    attention: np.ndarray
    weighted: np.ndarray
    survives: np.ndarray


def special_share(
    attn: np.ndarray, norms: np.ndarray, keys: np.ndarray, rows: np.ndarray | None = None
) -> SpecialShare:
    """:class:`SpecialShare` of maps (L, H, Tq, Tk), norms (L, H, Tk) and a boolean key mask (Tk,) (e.g. the
    [CLS]/[SEP] tokens, or a ViT's prefix tokens); ``rows`` (Tq,) bool picks the query rows averaged
    (default all; rows whose attention sums to 0, fully masked, are skipped)."""
    a = torch.as_tensor(attn).float()  # (L, H, Tq, Tk)
    n = torch.as_tensor(norms).float()[..., None]  # (L, H, Tk, 1)
    keys_t = torch.as_tensor(np.asarray(keys, bool))
    rows = np.ones(a.shape[2], bool) if rows is None else np.asarray(rows, bool)
    # row sums as one matrix product with two columns (1, norm): torch's BLAS, float32 accumulation, no
    # (L, H, Tq, Tk) temporary
    cols = torch.cat([torch.ones_like(n), n], dim=-1)  # (L, H, Tk, 2)
    with torch.inference_mode():
        total = (a @ cols).double().numpy()  # (L, H, Tq, 2)
        part = (a[..., keys_t] @ cols[..., keys_t, :]).double().numpy()  # (L, H, Tq, 2): the chosen keys
    totals = {"attention": total[..., 0], "weighted": total[..., 1]}
    parts = {"attention": part[..., 0], "weighted": part[..., 1]}

    def share(name: str) -> np.ndarray:
        total, part = totals[name], parts[name]  # (L, H, Tq) float64
        ok = (total > 0) & rows[None, None, :]
        frac = np.where(ok, part / np.where(ok, total, 1.0), 0.0)
        return frac.sum(-1) / np.maximum(ok.sum(-1), 1)  # (L, H)

    sa, sw = share("attention"), share("weighted")
    with np.errstate(divide="ignore", invalid="ignore"):
        survives = np.where(sa > 0, sw / np.where(sa > 0, sa, 1.0), np.nan)
    return SpecialShare(sa.astype(np.float32), sw.astype(np.float32), survives.astype(np.float32))
