"""Worker threads that run queued jobs in this process."""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ocibv.store import jobs as job_rows
from ocibv.store.database import Database

log = logging.getLogger("ocibv.jobs")


@dataclass
class JobContext:
    """What a handler gets: its job row and a way to report progress (also a heartbeat)."""

    job: job_rows.Job
    db: Database
    _last_beat: float = 0.0

    def progress(self, done: int, total: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_beat >= 0.5:
            self._last_beat = now
            with self.db.write() as conn:
                job_rows.heartbeat(conn, self.job.id, done, total)


Handler = Callable[[JobContext], None]


class JobRunner:
    """Runs jobs with ``workers`` threads. ``handlers`` maps a job kind to its function.

    A handler raising an exception marks the job failed; the handler itself is responsible
    for leaving its resource in a truthful state (FAULTY) first — ``on_failure`` is called
    with the job so the owning service can do that even for unexpected errors.
    """

    def __init__(
        self,
        db: Database,
        handlers: dict[str, Handler],
        *,
        workers: int = 2,
        on_failure: Callable[[job_rows.Job, BaseException], None] | None = None,
        delay_seconds: float = 0.0,
    ) -> None:
        self.db = db
        self.handlers = handlers
        self.workers = workers
        self.on_failure = on_failure
        self.delay_seconds = delay_seconds
        self.owner = uuid.uuid4().hex
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        with self.db.write() as conn:
            resumed = job_rows.requeue_orphans(conn, self.owner)
        if resumed:
            log.info("resuming %d job(s) interrupted by a previous stop", resumed)
        for n in range(self.workers):
            thread = threading.Thread(target=self._loop, name=f"ocibv-job-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """Tell idle workers that a job was queued (they also poll once a second)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def run_pending(self) -> int:
        """Run queued jobs in the calling thread until none is left (for admin commands)."""
        count = 0
        while self._run_one():
            count += 1
        return count

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

    def _run_one(self) -> bool:
        with self.db.write() as conn:
            job = job_rows.claim_next(conn, self.owner)
        if job is None:
            return False
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise RuntimeError(f"no handler for job kind {job.kind!r}")
            handler(JobContext(job, self.db))
        except BaseException as exc:
            log.error("job %s %s failed: %s", job.id, job.kind, exc)
            log.debug("%s", traceback.format_exc())
            if self.on_failure is not None:
                try:
                    self.on_failure(job, exc)
                except Exception:
                    log.exception("marking the resource of job %s FAULTY failed", job.id)
            with self.db.write() as conn:
                job_rows.finish(conn, job.id, job_rows.FAILED, f"{type(exc).__name__}: {exc}")
            if not isinstance(exc, Exception):
                raise
        else:
            with self.db.write() as conn:
                job_rows.finish(conn, job.id, job_rows.DONE)
        self._wake.set()  # a finished job may unblock others
        return True
