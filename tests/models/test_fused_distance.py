"""The fused attention + mean-attention-distance kernel (models/vision/fused_kernel.py, fused_distance.py).

Two claims are tested:

1. The Triton kernel equals the materialised-softmax reference. Without a GPU it runs in Triton's CPU
   interpreter, which must be switched on (TRITON_INTERPRET=1) before triton is first imported; this pytest
   process has imported it already (importing timm does), so those cases run in one child process
   (this file run as a script) and the parent compares the numbers it returns.
2. The reference equals :mod:`models.vision.distance` on the full maps of tiny random ViTs (1, 2 and 5 prefix
   tokens), and :func:`fused_distance_attention` leaves a model's output unchanged while recording the
   same per-layer distances as the capture path.

Tolerances: float32 results are compared within ``MARGIN * N * eps32`` relative to the largest value (one
rounding per accumulated term, N terms per row, margin 4); float16 within ``MARGIN * eps16`` (the
inputs' and the output's rounding dominates). Everything is tiny (N = 17 to 47), so the interpreter takes
a few seconds in all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script in the child process
    sys.path.insert(0, str(ROOT))

from models.vision.capture import CaptureError, capture_attention  # noqa: E402
from models.vision.distance import DistanceAccumulator, mean_attention_distance  # noqa: E402
from models.vision.fused_distance import fused_distance_attention  # noqa: E402
from models.vision.fused_kernel import (  # noqa: E402
    interpreter_active,
    mean_attention_distance_fused,
    mean_attention_distance_reference,
    resolve_backend,
)
from tests.factories import make_tiny_vit  # noqa: E402 - import-light: the interpreter child imports no web app

MARGIN = 4
EPS = {torch.float32: torch.finfo(torch.float32).eps, torch.float16: torch.finfo(torch.float16).eps}

# Kernel cases: (name, batch, heads, (rows, cols), prefix tokens, head dim, dtype, with v, renormalize, unit,
# block_m, block_n, q scale). N = prefix + rows * cols is never a multiple of the key block except where noted.
CASES = [
    ("cls_4x4_pixels", 2, 3, (4, 4), 1, 16, "float32", True, False, "pixels", 16, 16, 2.0),
    ("distilled_4x6_renorm", 1, 2, (4, 6), 2, 8, "float32", True, True, "pixels", 16, 16, 2.0),
    ("no_prefix_5x6_diag_no_v", 1, 4, (5, 6), 0, 24, "float32", False, False, "diagonal", 16, 16, 2.0),
    ("registers_6x7_peaked", 1, 2, (6, 7), 5, 16, "float32", True, False, "pixels", 16, 32, 6.0),
    ("registers_6x7_renorm_patches", 1, 2, (6, 7), 5, 16, "float32", False, True, "patches", 32, 16, 6.0),
    ("cls_4x4_float16", 2, 2, (4, 4), 1, 16, "float16", True, False, "pixels", 16, 16, 2.0),
]
PATCH_PX = 8


def case_inputs(case: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    name, b, h, grid, prefix, dim, dtype, with_v, _renorm, _unit, _bm, _bn, q_scale = case
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    n = prefix + grid[0] * grid[1]
    q = torch.randn(b, h, n, dim, generator=g) * q_scale  # (B, H, N, D), peaked rows when q_scale is large
    k = torch.randn(b, h, n, dim, generator=g)  # (B, H, N, D)
    v = torch.randn(b, h, n, dim, generator=g) if with_v else None  # (B, H, N, D)
    dt = getattr(torch, dtype)
    return q.to(dt), k.to(dt), None if v is None else v.to(dt)


def run_case(case: tuple, backend: str) -> dict:
    name, _b, _h, grid, prefix, _dim, _dtype, _with_v, renorm, unit, bm, bn, _qs = case
    q, k, v = case_inputs(case)
    kw = dict(renormalize=renorm, unit=unit)
    if backend == "reference":
        res = mean_attention_distance_reference(q, k, grid, PATCH_PX, prefix, v, **kw)
        head_sums = res.mad.sum(dim=0, dtype=torch.float64)  # (H,)
    else:
        head_sums = torch.full((q.shape[1],), 0.5, dtype=torch.float64)  # (H,), added to in the kernel
        res = mean_attention_distance_fused(
            q,
            k,
            grid,
            PATCH_PX,
            prefix,
            v,
            backend=backend,
            block_m=bm,
            block_n=bn,
            head_sums=head_sums,
            **kw,
        )
        head_sums -= 0.5
    return {
        "head_sums": head_sums.tolist(),
        "rows": res.rows.tolist(),
        "mad": res.mad.tolist(),
        "out": None if res.out is None else res.out.float().tolist(),
        "out_dtype": None if res.out is None else str(res.out.dtype),
    }


def tiny_vit_record(backend: str) -> dict:
    """Per-layer MAD and forward output of a tiny random ViT through fused_distance_attention."""
    model = make_tiny_vit()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # (B, 3, 32, 32)
    with torch.inference_mode(), fused_distance_attention(model, (4, 4), 8, 1, backend=backend) as rec:
        y = model.forward_features(x)  # (B, N, C)
    return {"mad": rec.result().tolist(), "features": y.tolist()}


def child_main() -> None:
    """Run every kernel case through the interpreter and print the results as JSON (stdout's last line)."""
    assert interpreter_active(), "run with TRITON_INTERPRET=1 set before triton is imported"
    results = {
        "auto_backend": resolve_backend("auto", torch.device("cpu")),
        "cases": {case[0]: run_case(case, "auto") for case in CASES},
        "tiny_vit": tiny_vit_record("auto"),
    }
    print(json.dumps(results))


@pytest.fixture(scope="module")
def interpreted() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_close(got, want, dtype: torch.dtype, n: int, what: str) -> None:
    got, want = torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64)
    assert got.shape == want.shape, what
    rel = MARGIN * (n if dtype == torch.float32 else 1) * EPS[dtype]
    tol = rel * max(want.abs().max().item(), 1.0)
    err = (got - want).abs().max().item()
    assert err <= tol, f"{what}: max |kernel - reference| = {err:.3g} > {tol:.3g}"


# ----------------------------------------------------------------------------------------------------------
# 1. the kernel (interpreter, in a child process) equals the reference


def test_interpreter_is_what_auto_picks_in_a_triton_interpret_process(interpreted):
    assert interpreted["auto_backend"] == "interpret"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_kernel_equals_reference(interpreted, case):
    got = interpreted["cases"][case[0]]
    want = run_case(case, "reference")
    dtype = getattr(torch, case[6])
    n = case[4] + case[3][0] * case[3][1]
    assert_close(got["rows"], want["rows"], dtype, n, "rows")
    assert_close(got["mad"], want["mad"], dtype, n, "mad")
    assert_close(got["head_sums"], want["head_sums"], dtype, n, "sum over the batch, added in the kernel")
    if case[7]:
        assert got["out_dtype"] == want["out_dtype"] == str(dtype)
        assert_close(got["out"], want["out"], dtype, n, "attention output")
    else:
        assert got["out"] is None
    prefix = case[4]
    assert all(r == 0.0 for bh in got["rows"] for r in [x for row in bh for x in row[:prefix]])


def test_kernel_inside_a_tiny_vit(interpreted):
    """The interpreted kernel as the attention of a whole model: same features and per-layer MAD."""
    want = tiny_vit_record("torch")
    assert_close(interpreted["tiny_vit"]["mad"], want["mad"], torch.float32, 17, "per-layer MAD")
    assert_close(interpreted["tiny_vit"]["features"], want["features"], torch.float32, 17, "features")


@pytest.mark.skipif(interpreter_active(), reason="triton.jit is the interpreter in this process")
def test_kernel_compiles_for_hopper_without_a_gpu():
    """The CUDA path (bfloat16, ViT-B/16's shape) compiles to PTX for sm_90 with Triton's bundled ptxas: the
    interpreter does not check GPU-only rules (dot shapes, layouts), the compiler does."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from models.vision.fused_kernel import _mad_attention_kernel

    fn = triton.jit(_mad_attention_kernel)
    pointers = {
        "Q": "*bf16",
        "K": "*bf16",
        "V": "*bf16",
        "Out": "*bf16",
        "Rows": "*fp32",
        "HeadSums": "*fp64",
    }
    scalars = {"qk_scale": "fp32", "dist_scale": "fp32", "H": "i32", "N": "i32"}
    meta = dict(NUM_PREFIX=1, GRID_W=14, HEAD_DIM=64, BLOCK_D=64, BLOCK_M=64, BLOCK_N=32)
    meta.update(HAS_V=True, HAS_SUMS=True, RENORM=False, DOT_PRECISION="tf32")  # as fused_distance_attention
    signature = {
        name: pointers.get(name) or scalars.get(name) or ("i32" if name.startswith("stride") else "constexpr")
        for name in fn.arg_names
    }
    source = ASTSource(
        fn=fn, signature=signature, constexprs={(fn.arg_names.index(k),): v for k, v in meta.items()}
    )
    kernel = triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "num_stages": 2}
    )
    ptx = kernel.asm["ptx"]
    assert "mma" in ptx  # both products on tensor cores
    assert "ex2.approx" in ptx and "sqrt" in ptx  # the softmax and the in-kernel distance
    assert "atom.global" in ptx and ".f64" in ptx  # the float64 per-head sums


# ----------------------------------------------------------------------------------------------------------
# 2. the reference equals models/vision/distance.py on full maps, and the model patch is faithful


def tiny_models() -> list[tuple[str, torch.nn.Module, tuple[int, int], int, int]]:
    """(name, model, grid, patch px, prefix tokens): [CLS]; [CLS] + distillation; [CLS] + 4 registers."""
    deit = make_tiny_vit("deit_tiny_distilled_patch16_224", img_size=48, patch_size=16, depth=2, num_heads=2)
    return [
        ("vit_cls", make_tiny_vit(), (4, 4), 8, 1),
        ("deit_distilled", deit, (3, 3), 16, 2),
        ("vit_reg4", make_tiny_vit(reg_tokens=4), (4, 4), 8, 5),
    ]


MODELS = tiny_models()


def images(model: torch.nn.Module, batch: int = 3) -> torch.Tensor:
    size = model.patch_embed.img_size
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(2))  # (B, 3, R, R)


def q_and_k(model: torch.nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each block's q and k (after q_norm / k_norm, before scaling), and its captured probabilities."""
    qs, ks = [], []
    handles = [
        h
        for blk in model.blocks
        for h in (
            blk.attn.q_norm.register_forward_hook(lambda _m, _i, out: qs.append(out)),
            blk.attn.k_norm.register_forward_hook(lambda _m, _i, out: ks.append(out)),
        )
    ]
    try:
        with torch.inference_mode(), capture_attention(model) as rec:
            model.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    return qs, ks, rec.maps


@pytest.mark.parametrize("renorm", [False, True])
@pytest.mark.parametrize("unit", ["pixels", "diagonal"])
@pytest.mark.parametrize(("name", "model", "grid", "patch", "prefix"), MODELS, ids=[m[0] for m in MODELS])
def test_reference_equals_distance_module_on_captured_maps(name, model, grid, patch, prefix, renorm, unit):
    x = images(model)
    qs, ks, maps = q_and_k(model, x)
    n = prefix + grid[0] * grid[1]
    for layer, (q, k, probs) in enumerate(zip(qs, ks, maps, strict=True)):
        ref = mean_attention_distance_reference(
            q, k, grid, patch, prefix, scale=model.blocks[layer].attn.scale, renormalize=renorm, unit=unit
        )
        want = mean_attention_distance(probs, grid, prefix, patch, renormalize=renorm, unit=unit)  # (B, H)
        assert_close(ref.mad.tolist(), want.tolist(), torch.float32, n, f"{name} layer {layer}")


@pytest.mark.parametrize(("name", "model", "grid", "patch", "prefix"), MODELS, ids=[m[0] for m in MODELS])
def test_patched_model_keeps_its_output_and_matches_the_capture_path(name, model, grid, patch, prefix):
    x = images(model)
    with torch.inference_mode():
        plain = model.forward_features(x)  # (B, N, C), timm's own attention
        with fused_distance_attention(model, grid, patch, prefix, backend="torch") as rec:
            fused = model.forward_features(x)
        acc = DistanceAccumulator(grid, prefix, patch)
        with capture_attention(model, reduce=acc.update):
            model.forward_features(x)
    n = prefix + grid[0] * grid[1]
    assert_close(fused.tolist(), plain.tolist(), torch.float32, n, f"{name} features")
    assert rec.n_images == x.shape[0]
    assert_close(rec.result().tolist(), acc.result().tolist(), torch.float32, n, f"{name} per-layer MAD")
    assert all("forward" not in blk.attn.__dict__ for blk in model.blocks)  # restored


def test_patch_is_removed_when_the_forward_raises():
    model = MODELS[0][1]
    with (
        pytest.raises(RuntimeError, match="boom"),
        fused_distance_attention(model, (4, 4), 8, 1, backend="torch"),
    ):
        assert all("forward" in blk.attn.__dict__ for blk in model.blocks)  # patched while open
        raise RuntimeError("boom")
    assert all("forward" not in blk.attn.__dict__ for blk in model.blocks)


def test_bfloat16_model_on_cpu():
    """Half precision through the patched model (reference backend): dtype kept, values near float32."""
    _name, model, grid, patch, prefix = MODELS[0]
    model16 = make_tiny_vit().to(torch.bfloat16)  # the same seeded weights, rounded to bfloat16
    x = images(model)
    results = []
    for m, xx in ((model, x), (model16, x.to(torch.bfloat16))):
        with torch.inference_mode(), fused_distance_attention(m, grid, patch, prefix, backend="torch") as rec:
            y = m.forward_features(xx)  # (B, N, C)
        assert y.dtype == xx.dtype
        results.append(rec.result())
    want, got = results
    # bfloat16 keeps 8 significant bits (eps 2^-7): after 3 layers of rounding, within 5% of the largest value
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()


def test_errors_and_backend_choice():
    q = torch.zeros(1, 2, 17, 16)  # (B, H, N, D)
    with pytest.raises(ValueError, match="prefix tokens"):
        mean_attention_distance_fused(q, q, (4, 5), 8, 1)
    with pytest.raises(ValueError, match="backend"):
        mean_attention_distance_fused(q, q, (4, 4), 8, 1, backend="cuda")
    with pytest.raises(ValueError, match="CUDA"):
        mean_attention_distance_fused(q, q, (4, 4), 8, 1, backend="triton")
    if not interpreter_active():
        assert resolve_backend("auto", torch.device("cpu")) == "torch"
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            mean_attention_distance_fused(q, q, (4, 4), 8, 1, backend="interpret")


def test_other_attention_classes_are_refused():
    model = make_tiny_vit(depth=1, num_heads=2, num_classes=1000)  # timm's default head

    class OtherAttention(type(model.blocks[0].attn)):
        def forward(self, x, attn_mask=None, is_causal=False):  # a subclass with its own forward
            return super().forward(x, attn_mask, is_causal)

    model.blocks[0].attn.__class__ = OtherAttention
    with pytest.raises(CaptureError, match="plain Attention"), fused_distance_attention(model, (4, 4), 8, 1):
        pass


if __name__ == "__main__":
    child_main()
