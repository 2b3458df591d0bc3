"""The Ray backend (``settings.cluster.backend="ray"``, ``make run-cluster``): the same FastAPI app served by Ray Serve.

- :mod:`app.cluster.serve_app` builds the Serve application: an ``Ingress`` deployment that wraps
  ``create_app(settings)`` (every route, page and cache as in ``make run``) and one deployment per model
  family, ``VisionModels`` and ``TextModels``, whose replicas hold the allowlisted models and run the
  forwards (:mod:`app.cluster.deployments`).
- :mod:`app.cluster.client` is the ingress's side of the seam in :mod:`app.backend`: forwards go
  to the model deployments through DeploymentHandles; Serve's backpressure and lost replicas become the
  app's usual 503 + ``Retry-After``.
- :mod:`app.cluster.dataset` fans a dataset job's batches out as Ray tasks across the nodes.
- :mod:`app.cluster.store` shares analyses between ingress replicas through the object store.
- ``python -m app.cluster`` (:mod:`app.cluster.__main__`) starts or joins a cluster and serves the app.

This package is web glue: it imports Ray, FastAPI and ``app``; ``models/`` never imports it.
"""
