"""Fairness scenario (issue 17): one flooding client and one polite client side by side.

- ``Flooder``: ``FLOOD_USERS`` greenlets (16 by default) sharing ONE client address, with no think time:
  they upload distinct photos and ask for rollouts with random ``discard_ratio`` floats on their own
  analyses (quantised to the page's 0.05 steps by the server), never honouring ``Retry-After``. Before
  issue 17 this filled the CPU pool and the model queue for everyone.
- ``Polite``: one person uploading a distinct photo every 1-2 s, retrying after ``Retry-After`` as the page
  does. Each attempt is tallied under ``polite: /api/vision/analyze [upload]``: the run prints the share
  of attempts that were served (goal: at least 80 % while the flood runs).

Run by ``python bench/load/run.py --scenario fairness`` (and after the class scenario by default); the
server trusts 127.0.0.1 as a proxy, so each user's ``X-Forwarded-For`` is its client address.
"""

from __future__ import annotations

import os
import random

import locustfile as base  # the Student class and the tallies (not imported by name: not a user here)
from locust import between, constant

FLOOD_ADDRESS = "10.66.6.6"
POLITE_ADDRESS = "10.7.7.7"
POLITE_UPLOAD = "polite: /api/vision/analyze [upload]"


class Flooder(base.Student):
    """Many connections of one client, no think time, no retries."""

    fixed_count = int(os.environ.get("FLOOD_USERS", "16"))
    address = FLOOD_ADDRESS
    wait_time = constant(0.02)
    analysis_id: str | None = None

    def flood(self) -> None:
        if self.analysis_id is None or random.random() < 0.1:
            files = [("image", "flood.jpg", base.distinct_jpeg(), "image/jpeg")]
            a = self.call("POST", "/api/vision/analyze", "flood: /api/vision/analyze", files=files, retries=0)
            self.analysis_id = a["analysis_id"] if a else self.analysis_id
            return
        params = {"head_fusion": random.choice(["max", "min"]), "discard_ratio": random.uniform(0.0, 0.95)}
        self.call(
            "GET",
            f"/api/vision/analysis/{self.analysis_id}/rollout",
            "flood: /api/vision/analysis/[id]/rollout",
            params=params,
            retries=0,
        )


class Polite(base.Student):
    """One person on the vision page."""

    fixed_count = 1
    address = POLITE_ADDRESS
    wait_time = between(1.0, 2.0)

    def upload(self) -> None:
        files = [("image", "photo.jpg", base.distinct_jpeg(), "image/jpeg")]
        self.call("POST", "/api/vision/analyze", POLITE_UPLOAD, files=files)


# Student's @task methods are inherited by the metaclass: these users do only their own thing.
Flooder.tasks = [Flooder.flood]
Polite.tasks = [Polite.upload]
