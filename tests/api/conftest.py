"""Tests of the HTTP routes through the app (TestClient): payload shapes, status codes, OpenAPI, hardening,
the schemathesis fuzzer, the local Hub, lean installs, and the command line (``python -m app serve`` and
``export``, whose exports must hold the API's numbers). The app fixtures (``client``, ``app_client``) are in
tests/conftest.py, the inputs in tests/factories.py; no fixture is needed by this folder alone yet."""
