"""Tests of the Ray backend: the Serve replicas' batching, the Serve app end to end on 127.0.0.1, and dataset
jobs across a two-node ``ray.cluster_utils.Cluster``. Each module starts (and shuts down) its own loopback Ray
instance, so they run one module at a time; Ray is a dev requirement (requirements-ray.txt) and each module
skips itself without it. No fixture is needed by this folder alone yet."""
