"""EXPERIMENTAL: mean attention distance fused into the attention kernel (Triton); the N x N map never exists.

Experimental: no GPU has run this kernel. It is checked on CPU in Triton's interpreter against the reference
below, and compiled for sm_90 without a device; speed and results on hardware are unmeasured
(``bench/gpu_fused.py``, docs/gpu.md). No front door uses it: they reduce captured maps (``DistanceAccumulator``).

Mean attention distance (ViT paper, Dosovitskiy et al. 2021, Fig. 7 right and Appendix D.7) is defined in
:mod:`models.vision.distance`: per query patch i the attention-weighted distance sum_j A[i, j] d(i, j), then
the mean over query patches. Computing it from captured maps needs the (B, H, N, N) probabilities, which a
fused attention kernel never writes. This module instead extends the online softmax of FlashAttention
(Dao et al. 2022, Algorithm 1; Triton's ``06-fused-attention`` tutorial) with one more running sum. For each
query row i, over blocks of keys j, the kernel keeps

    m_i = max_j s_ij                          running max of the scores s = q k^T * scale
    l_i = sum_j exp(s_ij - m_i)               softmax normaliser
    t_i = sum_j exp(s_ij - m_i) * d(i, j)     distance accumulator
    o_i = sum_j exp(s_ij - m_i) * v_j         attention output (optional)

and when a new key block raises the max from m to m', every sum is rescaled by exp(m - m'), exactly like the
output accumulator. At the end t_i / l_i = sum_j A[i, j] d(i, j): the row's distance, from which the
per-(B, H) MAD is a mean over query patches. Nothing of size N x N is stored, and d(i, j) is computed in
the kernel from the token indices: token i >= ``num_prefix`` is patch p = i - num_prefix at grid position
(p // C, p % C), d = sqrt(dr^2 + dc^2) in grid units (0 when j is a prefix token), scaled to the requested
unit once per row (:func:`models.vision.mad.grid_unit_scale`).

Conventions are those of :mod:`models.vision.distance`: pixels by default (patch_size * grid distance);
prefix tokens ([CLS], distillation, registers) dropped as queries; ``renormalize=False`` (probing-vits) keeps
the attention paid to prefix keys in the row mass (it contributes distance 0); ``renormalize=True``
(Walmer et al.) divides by the patch mass instead, which the kernel accumulates as a fifth running sum
``lp_i = sum_{j patch} exp(s_ij - m_i)``. Prefix query rows of ``rows`` are 0 (not part of the statistic).

Backends: ``"triton"`` (CUDA tensors; compiled), ``"interpret"`` (the same kernel run by Triton's CPU
interpreter, for tests: slow, tiny shapes only), ``"torch"`` (:func:`mean_attention_distance_reference`,
the materialised softmax). ``"auto"`` picks Triton on CUDA, the interpreter on CPU when the process
started with ``TRITON_INTERPRET=1`` (see :func:`interpreter_active`), and the reference otherwise.
Whole models: :mod:`models.vision.fused_distance`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from models.vision.mad import Unit, grid_unit_scale, patch_distances

try:  # triton ships with CUDA builds of torch; the torch reference works without it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only on installs without triton
    triton = None
    tl = None

Backend = Literal["auto", "triton", "interpret", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "interpret", "torch")


@dataclass(frozen=True)
class FusedDistance:
    """What one fused attention + distance call returns."""

    rows: torch.Tensor  # (B, H, N) float32: sum_j A[i, j] d(i, j) per query token (prefix rows 0)
    out: torch.Tensor | None  # (B, H, N, D) softmax(q k^T * scale) v in v's dtype, when v was given
    num_prefix: int

    @property
    def mad(self) -> torch.Tensor:
        """(B, H) float32: the mean over query patches of each row's distance (computed when asked)."""
        return self.rows[..., self.num_prefix :].mean(dim=-1)


def _check(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None, grid: tuple[int, int], num_prefix: int
) -> None:
    if q.ndim != 4 or k.shape != q.shape:
        raise ValueError(f"q and k must both be (B, H, N, D), got {tuple(q.shape)} and {tuple(k.shape)}")
    if v is not None and v.shape != q.shape:
        raise ValueError(f"v must be (B, H, N, D) like q, got {tuple(v.shape)}")
    rows, cols = int(grid[0]), int(grid[1])
    if rows < 1 or cols < 1 or num_prefix < 0:
        raise ValueError(f"grid must be positive and num_prefix >= 0, got {grid} and {num_prefix}")
    n = num_prefix + rows * cols
    if q.shape[2] != n:
        raise ValueError(
            f"N must be {num_prefix} prefix tokens + {rows} x {cols} patches = {n}, got {q.shape[2]}"
        )


def mean_attention_distance_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    grid: tuple[int, int],
    patch_px: int,
    num_prefix: int,
    v: torch.Tensor | None = None,
    *,
    scale: float | None = None,
    renormalize: bool = False,
    unit: Unit = "pixels",
) -> FusedDistance:
    """The same quantities from the materialised softmax, in float32 (the kernel's specification).

    A = softmax(q k^T * scale) with scale = D^-1/2 by default (Vaswani et al. 2017, Section 3.2.1; timm and
    ``F.scaled_dot_product_attention`` use the same); distances from
    :func:`models.vision.distance.patch_distances`, zero-padded over the prefix tokens. Memory: B H N^2 floats.
    """
    _check(q, k, v, grid, num_prefix)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    p0 = int(num_prefix)
    s = (q.float() @ k.float().transpose(-2, -1)) * scale  # (B, H, N, N)
    a = s.softmax(dim=-1)  # (B, H, N, N)
    d = patch_distances(grid, patch_px, unit, device=q.device)  # (P, P)
    d_full = nn.functional.pad(d, (p0, 0, p0, 0))  # (N, N), 0 on prefix rows and columns
    rows = (a * d_full).sum(dim=-1)  # (B, H, N)
    if renormalize:
        mass = a[..., p0:].sum(dim=-1).clamp_min(1e-12)  # (B, H, N) each row's patch mass
        rows = rows / mass
    rows[..., :p0] = 0.0
    out = None if v is None else (a @ v.float()).to(v.dtype)  # (B, H, N, D)
    return FusedDistance(rows=rows, out=out, num_prefix=p0)


# ----------------------------------------------------------------------------------------------------------
# The kernel. A plain function, wrapped on first use by triton.jit + autotune (CUDA) or by Triton's
# interpreter (CPU, when the process was started with TRITON_INTERPRET=1).


def _mad_attention_kernel(
    Q,
    K,
    V,
    Out,
    Rows,
    HeadSums,
    stride_qb,
    stride_qh,
    stride_qn,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_vd,
    stride_ob,
    stride_oh,
    stride_on,
    stride_od,
    H,
    N,
    qk_scale,
    dist_scale,
    NUM_PREFIX: tl.constexpr,
    GRID_W: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_V: tl.constexpr,
    HAS_SUMS: tl.constexpr,
    RENORM: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """One program: BLOCK_M query rows of one (batch, head); loops over all keys in BLOCK_N blocks."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b = off_bh // H
    off_h = off_bh % H
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,) query tokens
    offs_n = tl.arange(0, BLOCK_N)  # (BN,)
    offs_d = tl.arange(0, BLOCK_D)  # (BD,)
    d_ok = offs_d < HEAD_DIM
    m_ok = offs_m < N

    q_base = Q + off_b.to(tl.int64) * stride_qb + off_h.to(tl.int64) * stride_qh
    k_base = K + off_b.to(tl.int64) * stride_kb + off_h.to(tl.int64) * stride_kh
    q_ptrs = q_base + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=m_ok[:, None] & d_ok[None, :], other=0.0)  # (BM, BD)

    # grid position of each query patch; prefix rows get garbage here and are zeroed at the end
    # (float: the differences and squares below are exact integers, and float ops run at full rate on GPUs,
    # where an int -> float conversion per score would not)
    q_patch = offs_m - NUM_PREFIX
    q_row = q_patch // GRID_W
    q_col = (q_patch - q_row * GRID_W).to(tl.float32)
    q_row = q_row.to(tl.float32)

    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    t_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # sum_j exp(s - m) d(i, j)
    lp_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # sum over patch keys of exp(s - m) (RENORM only)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    qk_scale = qk_scale * 1.4426950408889634  # log2(e): exp(x) = exp2(x log2 e)

    for start_n in range(0, N, BLOCK_N):
        cols = start_n + offs_n  # (BN,) key tokens
        n_ok = cols < N
        k_ptrs = k_base + cols[None, :] * stride_kn + offs_d[:, None] * stride_kd
        kt = tl.load(k_ptrs, mask=d_ok[:, None] & n_ok[None, :], other=0.0)  # (BD, BN)
        s = tl.dot(q, kt, input_precision=DOT_PRECISION) * qk_scale  # (BM, BN), log2 domain
        s = tl.where(n_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: every key block holds at least one key
        alpha = tl.math.exp2(m_i - m_new)  # (BM,) rescales the running sums to the new max
        p = tl.math.exp2(s - m_new[:, None])  # (BM, BN)
        l_i = l_i * alpha + tl.sum(p, 1)

        k_patch = cols - NUM_PREFIX
        k_row = k_patch // GRID_W
        k_col = (k_patch - k_row * GRID_W).to(tl.float32)
        k_row = k_row.to(tl.float32)
        dr = q_row[:, None] - k_row[None, :]  # (BM, BN)
        dc = q_col[:, None] - k_col[None, :]  # (BM, BN)
        dist = tl.sqrt(dr * dr + dc * dc)  # (BM, BN) grid units
        k_is_patch = (k_patch >= 0)[None, :]
        dist = tl.where(k_is_patch, dist, 0.0)  # prefix keys: distance 0
        t_i = t_i * alpha + tl.sum(p * dist, 1)
        if RENORM:
            lp_i = lp_i * alpha + tl.sum(tl.where(k_is_patch, p, 0.0), 1)
        if HAS_V:
            v_base = V + off_b.to(tl.int64) * stride_vb + off_h.to(tl.int64) * stride_vh
            v_ptrs = v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd
            v = tl.load(v_ptrs, mask=n_ok[:, None] & d_ok[None, :], other=0.0)  # (BN, BD)
            acc = acc * alpha[:, None]
            acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        m_i = m_new

    if RENORM:  # noqa: SIM108 (a constexpr branch, resolved when the kernel is compiled)
        row = tl.where(lp_i > 0.0, t_i / lp_i, 0.0)
    else:
        row = t_i / l_i
    row = tl.where(offs_m >= NUM_PREFIX, row * dist_scale, 0.0)
    tl.store(Rows + off_bh.to(tl.int64) * N + offs_m, row, mask=m_ok)
    if HAS_SUMS:  # this block's share of sum_b MAD[b, h]; atomics add in any order, float64 hides it
        block_sum = tl.sum(tl.where(m_ok & (offs_m >= NUM_PREFIX), row, 0.0), 0).to(tl.float64)
        tl.atomic_add(HeadSums + off_h, block_sum / (N - NUM_PREFIX))
    if HAS_V:
        o = acc / l_i[:, None]
        o_base = Out + off_b.to(tl.int64) * stride_ob + off_h.to(tl.int64) * stride_oh
        o_ptrs = o_base + offs_m[:, None] * stride_on + offs_d[None, :] * stride_od
        tl.store(o_ptrs, o.to(Out.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])


# Autotuned on CUDA for float16 / bfloat16: the first call per (N, head dim, flags) compiles and times each
# (ViT-B/16 has N = 197, DINOv2-S/14 at 224 px N = 257; short rows favour small key blocks, so the padded
# tail costs little). float32 runs IEEE dots on the FMA units (the accuracy path, not the fast one) with one
# fixed config, which also spares compiling every config for it.
_CUDA_CONFIGS = [  # (BLOCK_M, BLOCK_N, num_warps, num_stages)
    (64, 32, 4, 2),
    (64, 64, 4, 2),
    (64, 64, 4, 3),
    (128, 32, 4, 2),
    (128, 64, 4, 3),
    (128, 64, 8, 3),
]
_CUDA_FIXED = (64, 32, 4, 2)


@functools.cache
def _compiled(kind: str):
    """The kernel for ``kind``: 'interpret' (Triton's CPU interpreter), 'triton' (CUDA, autotuned) or
    'triton_fixed' (CUDA, block sizes given at launch)."""
    if triton is None:
        raise RuntimeError("the fused distance kernel needs the triton package")
    if kind == "interpret":
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction(_mad_attention_kernel)
    jitted = triton.jit(_mad_attention_kernel)
    if kind == "triton_fixed":
        return jitted
    configs = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
        for bm, bn, w, s in _CUDA_CONFIGS
    ]
    keys = ["N", "NUM_PREFIX", "GRID_W", "HEAD_DIM", "HAS_V", "HAS_SUMS", "RENORM", "DOT_PRECISION"]
    return triton.autotune(configs=configs, key=keys)(jitted)


def interpreter_active() -> bool:
    """True when Triton was imported with ``TRITON_INTERPRET=1``.

    Triton 3.8 reads the variable when each ``@triton.jit`` decorator runs, including those of its own
    standard library (``tl.sum``, ``tl.max``), so it must be set before ``triton`` is first imported in the
    process (a pytest process has usually imported it already: run the interpreter in a subprocess)."""
    if triton is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.standard.max, InterpretedFunction)


def resolve_backend(backend: Backend, device: torch.device) -> str:
    """'auto' -> 'triton' on CUDA, 'interpret' on CPU when TRITON_INTERPRET=1, else 'torch'."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "auto":
        if device.type == "cuda" and triton is not None:
            return "triton"
        return "interpret" if device.type == "cpu" and interpreter_active() else "torch"
    if backend == "triton" and (device.type != "cuda" or interpreter_active()):
        raise ValueError("backend 'triton' needs CUDA tensors and TRITON_INTERPRET unset")
    if backend == "interpret":
        if device.type != "cpu":
            raise ValueError("backend 'interpret' runs Triton's interpreter on CPU tensors")
        if not interpreter_active():
            raise RuntimeError("backend 'interpret' needs TRITON_INTERPRET=1 set before triton is imported")
    return backend


def mean_attention_distance_fused(
    q: torch.Tensor,
    k: torch.Tensor,
    grid: tuple[int, int],
    patch_px: int,
    num_prefix: int,
    v: torch.Tensor | None = None,
    *,
    scale: float | None = None,
    renormalize: bool = False,
    unit: Unit = "pixels",
    backend: Backend = "auto",
    block_m: int | None = None,
    block_n: int | None = None,
    out: torch.Tensor | None = None,
    head_sums: torch.Tensor | None = None,
) -> FusedDistance:
    """Mean attention distance of softmax(q k^T * scale) over an R x C patch grid, without the N x N map.

    ``q``, ``k`` (and ``v``): (B, H, N, D) with N = ``num_prefix`` + R * C, any strides (timm's permuted qkv
    views work without a copy). With ``v`` the attention output is returned too, as
    ``F.scaled_dot_product_attention`` would give it; ``out`` (a (B, H, N, D) tensor, any strides) receives
    it in place, e.g. a (B, N, H, D) buffer seen through ``.transpose(1, 2)`` so that merging heads is free.
    ``head_sums``: an (H,) float64 tensor to which sum_b MAD[b, h] is added in the kernel (atomics, so a
    dataset reduction needs no extra launch per layer).
    ``block_m`` / ``block_n``: query and key block sizes (powers of 2, >= 16); by default 16 in the
    interpreter, autotuned on CUDA for half types and 64 x 32 for float32. Backends: module docstring.
    """
    _check(q, k, v, grid, num_prefix)
    chosen = resolve_backend(backend, q.device)
    dtypes = {q.dtype, k.dtype} | ({v.dtype} if v is not None else set())
    if chosen != "torch" and (
        len(dtypes) != 1 or q.dtype not in (torch.float32, torch.float16, torch.bfloat16)
    ):
        raise ValueError(f"the kernel needs q, k, v of one float dtype (32, 16 or bfloat16), got {dtypes}")
    if chosen == "torch":
        ref = mean_attention_distance_reference(
            q, k, grid, patch_px, num_prefix, v, scale=scale, renormalize=renormalize, unit=unit
        )
        if out is not None and ref.out is not None:
            out.copy_(ref.out)
            ref = FusedDistance(rows=ref.rows, out=out, num_prefix=ref.num_prefix)
        if head_sums is not None:
            head_sums += ref.mad.sum(dim=0, dtype=torch.float64)  # (H,)
        return ref

    b, h, n, dim = q.shape
    scale = dim**-0.5 if scale is None else float(scale)
    dist_scale = grid_unit_scale(grid, patch_px, unit)
    rows = torch.empty((b, h, n), device=q.device, dtype=torch.float32)  # (B, H, N)
    if v is not None and out is None:
        out = torch.empty((b, n, h, dim), device=q.device, dtype=v.dtype).transpose(1, 2)  # (B, H, N, D)
    if out is not None and (v is None or out.shape != q.shape):
        raise ValueError(f"out must be (B, H, N, D) like q and needs v, got {tuple(out.shape)}")
    o = out if out is not None else rows  # placeholder pointer when there is no v (never dereferenced)
    vv = v if v is not None else k
    strides = [*q.stride(), *k.stride(), *vv.stride(), *(o.stride() if out is not None else (0, 0, 0, 0))]
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    if head_sums is not None and (head_sums.shape != (h,) or head_sums.dtype != torch.float64):
        raise ValueError(f"head_sums must be ({h},) float64, got {tuple(head_sums.shape)} {head_sums.dtype}")
    sums = head_sums if head_sums is not None else rows  # placeholder pointer when None (never dereferenced)
    args = (q, k, vv, o, rows, sums, *strides, h, n, scale, dist_scale)
    meta = dict(
        NUM_PREFIX=int(num_prefix),
        GRID_W=int(grid[1]),
        HEAD_DIM=dim,
        BLOCK_D=max(16, triton.next_power_of_2(dim)),
        HAS_V=v is not None,
        HAS_SUMS=head_sums is not None,
        RENORM=bool(renormalize),
        DOT_PRECISION=precision,
    )
    if chosen == "interpret":
        bm, bn = block_m or 16, block_n or 16
        _compiled("interpret")[(triton.cdiv(n, bm), b * h)](*args, **meta, BLOCK_M=bm, BLOCK_N=bn)
    elif block_m is None and block_n is None and q.dtype != torch.float32:
        with torch.cuda.device(q.device):
            _compiled("triton")[lambda cfg: (triton.cdiv(n, cfg["BLOCK_M"]), b * h)](*args, **meta)
    else:
        bm, bn, warps, stages = _CUDA_FIXED
        bm, bn = block_m or bm, block_n or bn
        with torch.cuda.device(q.device):
            _compiled("triton_fixed")[(triton.cdiv(n, bm), b * h)](
                *args, **meta, BLOCK_M=bm, BLOCK_N=bn, num_warps=warps, num_stages=stages
            )
    return FusedDistance(rows=rows, out=out, num_prefix=int(num_prefix))
