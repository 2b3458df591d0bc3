"""A client's dataset job by id, for the job routes (distance, feature sets, head importance).

The three kinds share one registry (``state.distance_jobs``), so every lookup checks the kind: an id of another
kind's job answers 404 like an unknown one. Cancelling drops only the caller's own subscription.
"""

from __future__ import annotations

from fastapi import HTTPException

from app.context import client_id
from app.jobs import Subscription
from app.state import AppState


def job_of_kind(state: AppState, job_id: str, kind: str) -> Subscription:
    """The job ``job_id`` if it is of ``kind``; 404 naming it as a ``kind`` job otherwise."""
    sub = state.distance_jobs.get(job_id)
    if sub is None or sub.kind != kind:
        raise HTTPException(404, f"No {kind} job {job_id!r} (unknown, or finished long ago and dropped).")
    return sub


def cancel_own(state: AppState, job_id: str, kind: str) -> Subscription:
    """Drop the caller's subscription to the ``kind`` job ``job_id``; 404 when it is not theirs."""
    job_of_kind(state, job_id, kind)
    sub = state.distance_jobs.cancel(job_id, owner=client_id.get())
    if sub is None:
        raise HTTPException(404, f"No {kind} job {job_id!r} of yours.")
    return sub
