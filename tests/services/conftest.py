"""Tests of the app's services below HTTP: the bounded executors (queue, pool), caches, micro-batching, image
decoding, jobs, and the memory and time budgets of the views. Some drive a service end to end through a
TestClient (``client``, ``app_client`` from tests/conftest.py) when the promise is about what a user sees
(503 + Retry-After, health under load). No fixture is needed by this folder alone yet."""
