"""Where the cluster's time goes, piece by piece, for one vision analysis (docs/cluster.md "Where the time goes").

    .venv/bin/python -m bench.cluster_costs [--repeats 3]

With the default vision model (DINOv2 ViT-S/14) on a sample photo, at 224 and 448 px:

- the forward with torch's default thread count (as ``make run``'s compute worker) and with 1 thread (what a
  Serve replica with ``num_cpus=1`` gets: Ray sets ``OMP_NUM_THREADS`` to the actor's CPUs);
- the size of the ``VisionAnalysis`` the replica sends back to the ingress (pickle protocol 5, as Ray's
  serializer uses) and the time to pickle and unpickle it;
- on a new local Ray instance (loopback, as ``make run-cluster``): the round trip of an empty actor call, and
  of a call that returns that analysis (serialise in the actor, through the object store, deserialise here),
  and the same with the (L, H, N, N) maps as a numpy array instead of a torch tensor (what a zero-copy
  transport would cost; the app does not do this).

Medians of ``--repeats`` runs; nothing here is asserted in a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
from pathlib import Path

from bench.common import median_ms

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data

    from app.settings import get_settings
    from app.store import vision_store
    from models.vision.analysis import analyze_image

    settings = get_settings()
    store = vision_store(settings, torch.device("cpu"), torch.float32)
    image = Image.fromarray(np.asarray(data.astronaut()))
    threads = torch.get_num_threads()
    analyses = {}
    print(f"cores {os.cpu_count()}, torch threads {threads}, load average {os.getloadavg()[0]:.2f}")
    print(
        f"{'px':>4} {'fwd ms':>8} {'fwd 1 thr':>10} {'pickle MB':>10} {'attn MB':>8} {'dumps ms':>9} {'loads ms':>9}"
    )
    for res in (224, 448):
        vm, r = store.get_at(None, res)
        analyses[res] = analyze_image(vm, image, r, keep_maps=True)  # warm-up
        torch.set_num_threads(threads)
        fwd = median_ms(lambda vm=vm, r=r: analyze_image(vm, image, r, keep_maps=True), args.repeats)
        torch.set_num_threads(1)
        fwd1 = median_ms(lambda vm=vm, r=r: analyze_image(vm, image, r, keep_maps=True), args.repeats)
        torch.set_num_threads(threads)
        a = analyses[res]
        blob = pickle.dumps(a, protocol=5)
        dumps = median_ms(lambda a=a: pickle.dumps(a, protocol=5), args.repeats)
        loads = median_ms(lambda blob=blob: pickle.loads(blob), args.repeats)
        attn_mb = a.attentions.numel() * a.attentions.element_size() / 1e6
        print(
            f"{res:4d} {fwd:8.0f} {fwd1:10.0f} {len(blob) / 1e6:10.1f} {attn_mb:8.1f} {dumps:9.1f} {loads:9.1f}",
            flush=True,
        )
    ray_hops(analyses, args.repeats)
    return 0


def ray_hops(analyses: dict, repeats: int) -> None:
    """Round trips through a local actor: empty, and returning each analysis."""
    os.environ["PYTHONPATH"] = str(ROOT)  # the actor's worker unpickles models.* too
    import ray

    from app.cluster.loopback import init_ray

    init_ray(num_cpus=1, log_to_driver=False)
    try:

        @ray.remote(num_cpus=0)
        class Holder:
            def __init__(self, blobs: dict) -> None:
                self.analyses = {res: pickle.loads(b) for res, b in blobs.items()}

            def noop(self) -> None:
                return None

            def get(self, res: int):
                return self.analyses[res]

            def get_numpy(self, res: int):  # the maps as a numpy array: Ray hands its buffer over zero-copy
                a = self.analyses[res]
                return dataclasses.replace(a, attentions=a.attentions.numpy())

        holder = Holder.remote({res: pickle.dumps(a, protocol=5) for res, a in analyses.items()})
        ray.get(holder.noop.remote())
        empty = median_ms(lambda: ray.get(holder.noop.remote()), max(20, repeats))
        print(f"actor call round trip, empty: {empty:.1f} ms")
        for res in analyses:
            ray.get(holder.get.remote(res))  # warm-up
            ms = median_ms(lambda res=res: ray.get(holder.get.remote(res)), repeats)
            print(f"actor call returning the {res} px analysis: {ms:.0f} ms")
            ray.get(holder.get_numpy.remote(res))  # warm-up
            ms = median_ms(lambda res=res: ray.get(holder.get_numpy.remote(res)), repeats)
            print(
                f"  the same with the maps as a numpy array (zero-copy out of the object store): {ms:.0f} ms"
            )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
