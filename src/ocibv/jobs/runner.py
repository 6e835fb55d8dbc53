"""Worker threads that run queued jobs in this process, and the process's heartbeat.

Every process that runs jobs has a row in ``processes`` refreshed by a heartbeat thread. A job
left running by another process is taken over only once that process is known dead (its pid
gone on this host, or its heartbeat stale), never merely because this process started.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable

from ocibv.jobs.context import JobContext, StepHook
from ocibv.jobs.registry import JobKind, JobRegistry
from ocibv.store import jobs as job_rows
from ocibv.store import processes
from ocibv.store.database import Database, now_us

log = logging.getLogger("ocibv.jobs")

HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 30.0  # a heartbeat this old means the process is gone (whatever its host)
RETRY_SECONDS_MAX = 30.0

DeadProcessHandler = Callable[[list[str]], None]


class ProcessLife:
    """This process's row in ``processes``: registered on start, refreshed by a thread, and
    the place where dead processes are found (``on_dead`` releases what they held)."""

    def __init__(self, db: Database, role: str, on_dead: DeadProcessHandler | None = None) -> None:
        self.db = db
        self.role = role
        self.id = uuid.uuid4().hex
        self.on_dead = on_dead
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self.db.write() as conn:
            processes.register(conn, self.id, self.role)
        self._thread = threading.Thread(target=self._loop, name="ocibv-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            with self.db.write() as conn:
                processes.unregister(conn, self.id)
        except Exception:  # a stopped database: the row goes stale and others clean up
            log.warning("could not unregister process %s", self.id)

    def reap(self) -> list[str]:
        """Find dead processes, hand their ids to ``on_dead``, then forget them."""
        with self.db.read() as conn:
            rows = processes.every(conn)
        now = now_us()
        dead = [p.id for p in rows if p.id != self.id and p.is_dead(now, int(STALE_SECONDS * 1e6))]
        if not dead:
            return []
        if self.on_dead is not None:
            self.on_dead(dead)
        with self.db.write() as conn:
            for process_id in dead:
                processes.unregister(conn, process_id)
        return dead

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with self.db.write() as conn:
                    if not processes.beat(conn, self.id):
                        processes.register(conn, self.id, self.role)
                self.reap()
            except Exception:
                log.exception("heartbeat failed")


class JobRunner:
    """Runs jobs with ``workers`` threads; kinds come from ``registry``.

    A job whose handler raises is failed: its kind's ``on_failure`` leaves the resource
    truthful, then the row is marked failed. That failure path is retried with backoff until
    it succeeds (a full disk may refuse it for a while), so no job stays running for ever.
    """

    def __init__(
        self,
        db: Database,
        registry: JobRegistry,
        *,
        owner: str,
        workers: int = 2,
        delay_seconds: float = 0.0,
        steps: StepHook | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.owner = owner
        self.workers = workers
        self.delay_seconds = delay_seconds
        self.steps = steps
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.workers):
            thread = threading.Thread(target=self._loop, name=f"ocibv-job-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def requeue(self, dead_owners: Iterable[str]) -> int:
        """Put back the jobs of dead processes (they run again from the top)."""
        with self.db.write() as conn:
            resumed = job_rows.requeue_orphans(conn, dead_owners)
        if resumed:
            log.info("resuming %d job(s) of a process that stopped", resumed)
            self.wake()
        return resumed

    def wake(self) -> None:
        """Tell idle workers that a job was queued (they also poll once a second)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self._run_one()
            except Exception:  # database trouble: log it and keep the worker alive
                log.exception("job worker error")
                ran = False
            if not ran:
                self._wake.wait(1.0)
                self._wake.clear()

    def run_pending(self) -> bool:
        """Claim and run one queued job in the calling thread; False when none is due (for
        processes without worker threads, such as ``ocibv clock advance``)."""
        return self._run_one()

    def _run_one(self) -> bool:
        with self.db.write() as conn:
            job = job_rows.claim_next(conn, self.owner)
        if job is None:
            return False
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        kind = self.registry.get(job.kind)
        try:
            if kind is None:
                raise RuntimeError(f"no handler for job kind {job.kind!r}")
            kind.run(JobContext(job, self.db, self.steps))
        except BaseException as exc:
            log.error("job %s %s failed: %s", job.id, job.kind, exc)
            log.debug("%s", traceback.format_exc())
            self._fail(job, kind, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._until_done(lambda: self._finish(job, job_rows.DONE, None), job)
        self._wake.set()  # a finished job may unblock others
        return True

    def _fail(self, job: job_rows.Job, kind: JobKind | None, exc: BaseException) -> None:
        def fail() -> None:
            if kind is not None and kind.on_failure is not None:
                kind.on_failure(job, exc)
            self._finish(job, job_rows.FAILED, f"{type(exc).__name__}: {exc}")

        self._until_done(fail, job)

    def _until_done(self, step: Callable[[], None], job: job_rows.Job) -> None:
        """Run ``step`` until it succeeds, backing off (a full disk refuses writes for a
        while); when stopping, give up: the row stays running and the next start resumes it."""
        attempt = 0
        while True:
            try:
                step()
                return
            except Exception:
                log.exception("finishing job %s (attempt %d) failed; retrying", job.id, attempt + 1)
            if self._stop.wait(min(RETRY_SECONDS_MAX, 0.5 * 2**attempt)):
                return
            attempt += 1

    def _finish(self, job: job_rows.Job, state: str, error: str | None) -> None:
        with self.db.write() as conn:
            job_rows.finish(conn, job.id, state, error)
