"""``python -m app export`` flags for the features and norms arrays (models/vision/feature_export.py).

Kept apart from app/cli.py so the parser stays import-light: nothing heavier than argparse is imported here.
"""

from __future__ import annotations

import argparse


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("features and norms (images only)")
    g.add_argument(
        "--features", action="store_true", help="residual stream, last-layer features and their PCA"
    )
    g.add_argument("--threshold", type=float, default=0.0, help="PCA foreground: first component > this")
    g.add_argument("--parts", type=int, metavar="K", help="K-means parts of the patch features, K clusters")
    g.add_argument("--seed", type=int, default=0, help="K-means seed (default %(default)s)")
    g.add_argument("--similarity", type=int, metavar="PATCH", help="cosine similarity to this 0-based patch")
    g.add_argument("--norms", action="store_true", help="token norms, MAD outliers, sink mass")
    g.add_argument("--mad-k", type=float, default=10.0, help="outliers: norm > median + K * MAD")


def feature_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`models.vision.feature_export.feature_arrays` from the parsed flags."""
    return dict(
        features=bool(getattr(args, "features", False)),
        threshold=float(getattr(args, "threshold", 0.0)),
        parts=getattr(args, "parts", None),
        seed=int(getattr(args, "seed", 0)),
        similarity=getattr(args, "similarity", None),
        norms=bool(getattr(args, "norms", False)),
        mad_k=float(getattr(args, "mad_k", 10.0)),
    )
