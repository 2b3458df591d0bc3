"""Top-k attention lines per query: what the head view draws for a long input (numpy + torch.topk).

bertviz's head view draws one line per (query, key) pair from the whole tensor inlined as JSON; at 500
tokens that is 12 x 500 x 500 numbers per layer. The lines a person can see are the strongest few of each
query row (Section 3.2.1: each row is a softmax over the keys, so a row's top few keys carry most of its
mass). We ship those, and the whole row only when asked.
"""

from __future__ import annotations

import numpy as np
import torch


def top_k_lines(view: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, Wq, Wk) float map -> (index (H, Wq, k') uint16, weight (H, Wq, k') uint8), k' = min(k, Wk).

    Per head and query row, the k' keys with the largest weights, strongest first (equal weights in any
    order); weight = round(probability x 255). Key indices must fit uint16 (Wk <= 65,536). ``torch.topk``
    (multi-threaded, no sort of the whole row) is several times faster than ``np.argpartition`` here.
    """
    if view.ndim != 3:
        raise ValueError(f"expected an (H, Wq, Wk) map, got shape {view.shape}")
    h, wq, wk = view.shape
    if wk > 65536:
        raise ValueError(f"{wk} keys do not fit uint16 indices")
    k = max(0, min(int(k), wk))
    if k == 0 or wq == 0:
        return np.zeros((h, wq, k), np.uint16), np.zeros((h, wq, k), np.uint8)
    v = torch.from_numpy(np.ascontiguousarray(view, dtype=np.float32))  # (H, Wq, Wk), shares memory
    w, idx = torch.topk(v, k, dim=-1, largest=True, sorted=True)  # (H, Wq, k) each
    q = torch.round(w.clamp(0.0, 1.0) * 255.0).to(torch.uint8)  # (H, Wq, k)
    return idx.to(torch.int32).numpy().astype(np.uint16), q.numpy()
