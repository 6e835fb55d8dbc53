"""What a job handler gets: its row, progress reporting, and named steps (a test hook)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ocibv.store import jobs as job_rows
from ocibv.store.database import Database


@dataclass
class StepHook:
    """Tests only (``OCIBV_TEST_HOOKS=1``): when the file ``<dir>/pause-at`` names this step
    (``<job kind>:<step>``), write ``<dir>/paused`` and pause the job for ever, so that a test
    can kill -9 the process at exactly that moment."""

    directory: Path

    def reached(self, kind: str, step: str) -> None:
        try:
            wanted = (self.directory / "pause-at").read_text().strip()
        except FileNotFoundError:
            return
        if wanted != f"{kind}:{step}":
            return
        (self.directory / "paused").write_text(f"{kind}:{step} {os.getpid()}\n")
        while True:
            time.sleep(3600)


@dataclass
class JobContext:
    job: job_rows.Job
    db: Database
    steps: StepHook | None = None
    _last_beat: float = 0.0

    def progress(self, done: int, total: int, *, force: bool = False) -> None:
        """Record progress (at most twice a second unless ``force``)."""
        now = time.monotonic()
        if force or now - self._last_beat >= 0.5:
            self._last_beat = now
            with self.db.write() as conn:
                job_rows.heartbeat(conn, self.job.id, done, total)

    def step(self, name: str) -> None:
        """Mark a point between two steps of the job (where a crash is tested)."""
        if self.steps is not None:
            self.steps.reached(self.job.kind, name)
