"""A small in-process registry of background jobs (dataset runs): start, progress, cancel, result.

Each job runs on its own daemon thread; at most ``max_running`` run at once, the rest wait their turn
(status ``queued``). At most ``max_active`` jobs may be queued or running, and at most ``per_owner``
subscriptions to them per client: past that :class:`JobsBusy` is raised at once (the API answers 503 +
Retry-After). Call :meth:`JobRegistry.check_room` before any expensive preparation, so a full registry
refuses cheaply. Finished jobs (done, failed, cancelled) are kept for their results, the oldest finished
ones dropped beyond ``max_kept``.

Submitters hold :class:`Subscription` s, never the job itself: two clients who submit the same work (equal
``key``) share one computation but get different ids, and :meth:`JobRegistry.cancel` drops only the
caller's subscription (checked against its ``owner``). The work is cancelled when no subscriber is left.
A job that fails unexpectedly reports a generic error quoting the id of the request that started it; the
exception goes to the log under that id. A job's function gets the :class:`Job`
and reports progress with ``job.report(done, total)``; it should poll ``job.cancel_event`` and raise
:class:`models.vision.distance.Cancelled` (or any exception whose class is named in ``cancelled_types``).

Heavy work inside a job should go through the app's compute queue one step at a time (a batch), so a
long job never holds the model for minutes while single-image requests wait.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from app.compute import Busy
from app.context import request_id

log = logging.getLogger("atlas.jobs")

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: tuple[str, ...] = ("done", "failed", "cancelled")


class JobsBusy(Busy):
    """Too many jobs are queued or running (all clients, or this client's quota)."""

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(f"{message}; wait for one to finish or cancel it", retry_after_s)


class UserError(ValueError):
    """An error whose message is meant for the user (shown as the failed job's ``error``)."""


@dataclass
class Job:
    id: str
    kind: str
    params: dict[str, Any]
    key: str | None = None  # jobs with equal keys compute the same thing (results may be reused)
    owner: str | None = None  # the client that started it (per-client quota)
    status: JobStatus = "queued"
    done: int = 0
    total: int | None = None
    error: str | None = None
    result: Any = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    request_id: str = "-"  # the request that started it (quoted by a generic error)
    subscribers: int = 0  # live subscriptions; the work is cancelled when the last one is

    def report(self, done: int, total: int | None) -> None:
        """Progress callback: ``done`` of ``total`` items (total None when unknown)."""
        self.done, self.total = int(done), total

    @property
    def elapsed_s(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started


class Subscription:
    """One submitter's handle on a :class:`Job`: its own ``id`` and ``owner``; everything else is the job's."""

    def __init__(self, job: Job, owner: str | None) -> None:
        self.id = secrets.token_hex(8)
        self.job = job
        self.owner = owner
        self.dropped = False  # cancelled by its owner: reads as cancelled whatever the shared work does

    @property
    def status(self) -> JobStatus:
        return "cancelled" if self.dropped else self.job.status

    @property
    def active(self) -> bool:
        return not self.dropped and self.job.status not in FINISHED

    def __getattr__(self, name: str) -> Any:  # kind, params, key, done, total, error, result, elapsed_s...
        return getattr(self.job, name)


class JobRegistry:
    def __init__(
        self,
        max_active: int = 4,
        max_kept: int = 32,
        max_running: int = 1,
        cancelled_types: tuple[type[BaseException], ...] = (),
        per_owner: int | None = None,
    ) -> None:
        self.max_active = max_active
        self.per_owner = per_owner
        self.max_kept = max_kept
        self._cancelled_types = cancelled_types
        self._slots = threading.Semaphore(max_running)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._subs: OrderedDict[str, Subscription] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    def _active(self) -> int:
        return sum(j.status not in FINISHED for j in self._jobs.values())

    def submit(
        self,
        fn: Callable[[Job], Any],
        kind: str,
        params: dict[str, Any],
        key: str | None = None,
        total: int | None = None,
        owner: str | None = None,
    ) -> Subscription:
        """Queue ``fn(job)``; its return value becomes ``job.result``. Raises JobsBusy when full.

        A job with the same ``key`` already queued or running is shared instead of starting another: the
        caller gets its own subscription to it (the same one when it subscribed already; the quota counts
        the caller's live subscriptions)."""
        with self._lock:
            if self._closed:
                raise JobsBusy("the server is shutting down")
            shared = None
            if key is not None:
                shared = next(
                    (
                        j
                        for j in self._jobs.values()
                        if j.key == key and j.status not in FINISHED and not j.cancel_event.is_set()
                    ),
                    None,
                )
            mine = shared is not None and any(
                s.job is shared and s.owner == owner and not s.dropped for s in self._subs.values()
            )
            if shared is None:
                self._check_room(owner)
            elif not mine:
                self._check_owner(owner)
            job = shared or Job(
                id=secrets.token_hex(8),
                kind=kind,
                params=params,
                key=key,
                total=total,
                owner=owner,
                request_id=request_id.get() or secrets.token_hex(6),
            )
            sub = self._subscribe(job, owner)
            if shared is None:
                self._jobs[job.id] = job
                self._evict()
        if shared is None:
            threading.Thread(
                target=self._run, args=(job, fn), name=f"atlas-job-{job.id}", daemon=True
            ).start()
        return sub

    def subscribe(self, job: Job, owner: str | None) -> Subscription:
        """A new subscription to a kept job (e.g. a finished one whose result is reused)."""
        with self._lock:
            sub = self._subscribe(job, owner)
            self._evict()
            return sub

    def _subscribe(self, job: Job, owner: str | None) -> Subscription:
        """The owner's live subscription to ``job``, or a new one (called with the lock held)."""
        for sub in self._subs.values():
            if sub.job is job and sub.owner == owner and not sub.dropped:
                return sub
        sub = Subscription(job, owner)
        self._subs[sub.id] = sub
        job.subscribers += 1
        return sub

    def check_room(self, owner: str | None = None) -> None:
        """Raise :class:`JobsBusy` now if a new job (for ``owner``) would be refused."""
        with self._lock:
            if self._closed:
                raise JobsBusy("the server is shutting down")
            self._check_room(owner)

    def _check_room(self, owner: str | None) -> None:
        """(called with the lock held)"""
        if self._active() >= self.max_active:
            raise JobsBusy(f"{self.max_active} dataset jobs are already queued or running")
        self._check_owner(owner)

    def _check_owner(self, owner: str | None) -> None:
        """(called with the lock held)"""
        if self.per_owner is not None and owner is not None:
            mine = sum(s.owner == owner and s.active for s in self._subs.values())
            if mine >= self.per_owner:
                raise JobsBusy(
                    f"you already have {mine} dataset job{'s' if mine != 1 else ''} queued or running "
                    f"(at most {self.per_owner} per client)"
                )

    def _run(self, job: Job, fn: Callable[[Job], Any]) -> None:
        # wait for a running slot, but leave at once when cancelled while queued
        while not self._slots.acquire(timeout=0.1):
            if job.cancel_event.is_set() or self._closed:
                self._finish(job, "cancelled")
                return
        try:
            if job.cancel_event.is_set():
                self._finish(job, "cancelled")
                return
            job.status, job.started = "running", time.time()
            try:
                result = fn(job)
            except self._cancelled_types:
                self._finish(job, "cancelled")
            except UserError as e:
                self._finish(job, "failed", error=str(e))
            except Exception:  # noqa: BLE001 - a job's failure is reported, never raised into a thread
                log.exception("job %s (%s) failed [request %s]", job.id, job.kind, job.request_id)
                error = f"The job failed (reference {job.request_id}); the details are in the server's log."
                self._finish(job, "failed", error=error)
            else:
                job.result = result
                self._finish(job, "done")
        finally:
            self._slots.release()

    def _finish(self, job: Job, status: JobStatus, error: str | None = None) -> None:
        with self._lock:
            job.status, job.error, job.finished = status, error, time.time()
            if job.started is None:
                job.started = job.finished
            self._evict()

    def _evict(self) -> None:
        """Drop the oldest finished jobs beyond max_kept with their subscriptions, and the oldest
        subscriptions to finished jobs beyond 4 x max_kept (called with the lock held)."""
        finished = [j.id for j in self._jobs.values() if j.status in FINISHED]
        gone = set(finished[: max(0, len(finished) - self.max_kept)])
        for job_id in gone:
            del self._jobs[job_id]
        for sub_id in [s.id for s in self._subs.values() if s.job.id in gone]:
            del self._subs[sub_id]
        idle = [s.id for s in self._subs.values() if not s.active]
        for sub_id in idle[: max(0, len(idle) - 4 * self.max_kept)]:
            del self._subs[sub_id]

    def get(self, sub_id: str) -> Subscription | None:
        with self._lock:
            return self._subs.get(sub_id)

    def cancel(self, sub_id: str, owner: str | None = None) -> Subscription | None:
        """Drop the caller's subscription (None when it is unknown or ``owner`` is not its owner; ``owner``
        None: the server itself). The work stops at its next check once no subscriber is left; finished
        work is unchanged."""
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None or (owner is not None and sub.owner != owner):
                return None
            if not sub.dropped and sub.job.status not in FINISHED:
                sub.dropped = True
                sub.job.subscribers -= 1
                if sub.job.subscribers <= 0:
                    sub.job.cancel_event.set()
        return sub

    def find_done(self, key: str | None) -> Job | None:
        """The newest successfully finished job with this key, if still kept (never for key None)."""
        if key is None:
            return None
        with self._lock:
            for job in reversed(self._jobs.values()):
                if job.key == key and job.status == "done":
                    return job
        return None

    def reuse_done(self, key: str | None, owner: str | None) -> Subscription | None:
        """A new subscription for ``owner`` to the newest finished job with this key; None when none is kept."""
        previous = self.find_done(key)
        return None if previous is None else self.subscribe(previous, owner)

    def jobs(self) -> list[Subscription]:
        """Every kept subscription, oldest first."""
        with self._lock:
            return list(self._subs.values())

    def shutdown(self) -> None:
        """Cancel everything; threads are daemons and stop at their next cancel check."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_event.set()


def response_fields(sub: Subscription, jobs_url: str, reused: bool = False) -> dict[str, Any]:
    """The fields every job response shares (distance, feature sets, head importance): the id, progress, the
    error, whether a finished job was reused, and the job's two URLs under ``jobs_url``."""
    return dict(
        job_id=sub.id,
        status=sub.status,
        done=sub.done,
        total=sub.total,
        elapsed_s=round(sub.elapsed_s, 3),
        error=sub.error,
        reused=reused,
        job_url=f"{jobs_url}/{sub.id}",
        cancel_url=f"{jobs_url}/{sub.id}/cancel",
    )
