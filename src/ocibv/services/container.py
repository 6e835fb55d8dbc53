"""Wires the services together with the database, the clock and the job runner.

The container only collects: each service registers its own job kinds, and late-bound
collaborators are handed over as the ``services.seams`` protocols they implement.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from ocibv.config import Settings
from ocibv.domain import limits
from ocibv.domain.lifecycle import AVAILABLE, FAULTY, TERMINATED
from ocibv.jobs.context import StepHook
from ocibv.jobs.registry import JobRegistry, JobSource
from ocibv.jobs.runner import JobRunner, ProcessLife
from ocibv.services.attachments import AttachmentService
from ocibv.services.backup_catalog import BackupCatalog
from ocibv.services.backup_expiry import BackupExpiry, TickReport
from ocibv.services.backup_policies import VolumeBackupPolicyService
from ocibv.services.backup_policy_assignments import VolumeBackupPolicyAssignmentService
from ocibv.services.backup_runs import BackupRuns
from ocibv.services.backup_scheduler import BackupScheduler
from ocibv.services.clock import ServiceClock
from ocibv.services.common import PageTokens
from ocibv.services.context import ServiceContext
from ocibv.services.housekeeping import StoreHousekeeping
from ocibv.services.identity import IdentityService
from ocibv.services.volume_backups import VolumeBackupService
from ocibv.services.volume_data import VolumeDataAccess
from ocibv.services.volume_group_backups import VolumeGroupBackupService
from ocibv.services.volume_groups import VolumeGroupService
from ocibv.services.volumes import VolumeService
from ocibv.store import jobs as job_rows
from ocibv.store import leases, processes, retry_tokens
from ocibv.store import reservations as reservation_rows
from ocibv.store import resources as repo
from ocibv.store.database import Database, now_us

log = logging.getLogger("ocibv")

SETTLED = (AVAILABLE, FAULTY, TERMINATED)
HOUSEKEEPING_LEASE = 300.0  # seconds; renewed every round, taken over when its holder stops
ADVANCE_GC_GRACE_SECONDS = 60.0


class Services:
    """Every service of one data directory. ``start()`` migrates and starts the workers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if not settings.data_dir.exists():  # volumes, backups and keys: the owner's alone
            settings.data_dir.mkdir(parents=True, mode=0o700)
        self.db = Database(settings.database_url)
        self.clock = ServiceClock(self.db)
        self.ctx = ServiceContext(settings, self.db, self.clock)
        tokens = PageTokens(self._page_token_key)
        self.catalog = BackupCatalog(settings.store_url)
        self.life = ProcessLife(self.db, "serve", on_dead=self.release_dead_processes)
        self.attachments = AttachmentService(self.ctx, self.life.id)
        self.backup_runs = BackupRuns(self.ctx, self.catalog, self.attachments)
        self.identity = IdentityService(self.ctx, tokens)
        self.volume_backups = VolumeBackupService(self.ctx, tokens, self.backup_runs)
        self.volume_group_backups = VolumeGroupBackupService(self.ctx, tokens, self.backup_runs)
        self.volume_backup_policies = VolumeBackupPolicyService(self.ctx, tokens)
        self.volume_backup_policy_assignments = VolumeBackupPolicyAssignmentService(
            self.ctx, self.volume_backup_policies
        )
        self.volumes = VolumeService(
            self.ctx, tokens, self.volume_backups, self.volume_backup_policy_assignments
        )
        self.volume_groups = VolumeGroupService(
            self.ctx, tokens, self.volumes, self.volume_group_backups
        )
        self.scheduler = BackupScheduler(
            self.ctx,
            self.volume_backups,
            self.volume_group_backups,
            BackupExpiry(self.ctx, self.volume_backups, self.volume_group_backups),
        )
        self.volume_data = VolumeDataAccess(self.ctx, self.release_dead_processes)
        self.store_housekeeping = StoreHousekeeping(self.ctx, self.catalog, self.backup_runs)
        self.jobs = JobRegistry()
        sources: tuple[JobSource, ...] = (
            self.identity,
            self.volumes,
            self.volume_groups,
            self.volume_backups,
            self.volume_group_backups,
        )
        for source in sources:
            source.register_jobs(self.jobs)
        steps = StepHook(settings.data_dir) if settings.test_hooks else None
        self.runner = JobRunner(
            self.db,
            self.jobs,
            owner=self.life.id,
            workers=settings.workers,
            delay_seconds=settings.job_delay_seconds,
            steps=steps,
        )
        self.ctx.wake_jobs = self.runner.wake
        self._housekeeping_stop = threading.Event()

    def _page_token_key(self) -> bytes:
        with self.db.write() as conn:
            return leases.shared_secret(conn, "page_tokens")

    def jobs_overview(self, limit: int = 20) -> list[JobView]:
        with self.db.read() as conn:
            return [job_view(j) for j in job_rows.recent(conn, limit)]

    def migrate(self) -> None:
        self.db.migrate()

    def start(self, *, workers: bool = True) -> None:
        """Migrate, join the processes, and (unless ``workers`` is False: an API-only
        process) run jobs and take part in periodic work."""
        self.migrate()
        self.release_settled_reservations()
        self.life.start()
        self.life.reap()
        self.release_orphaned_jobs()
        if workers:
            self.runner.start()
            threading.Thread(
                target=self._housekeeping, name="ocibv-housekeeping", daemon=True
            ).start()
            threading.Thread(
                target=self._scheduling, name="ocibv-scheduler", daemon=True
            ).start()

    def stop(self) -> None:
        self._housekeeping_stop.set()
        self.runner.stop()
        self.backup_runs.close()
        try:  # what this process held (its attachments) ends with it
            with self.db.write() as conn:
                reservation_rows.release_of_processes(conn, [self.life.id])
        except Exception:
            log.warning("could not release this process's reservations; others will")
        self.life.stop()
        self.db.dispose()

    # --- recovery ---------------------------------------------------------------------------

    def release_dead_processes(self, process_ids: list[str]) -> None:
        """Processes known dead: their jobs run again, what they held is released."""
        with self.db.write() as conn:
            resumed = job_rows.requeue_orphans(conn, process_ids)
            ended = reservation_rows.release_of_processes(conn, process_ids)
        if resumed:
            log.info("resuming %d job(s) of a process that stopped", resumed)
            self.runner.wake()
        self.volume_data.clean_up_after(ended)

    def release_orphaned_jobs(self) -> None:
        """Jobs whose owner has no process row at all (it stopped before heartbeats existed,
        or was reaped) are queued again."""
        with self.db.read() as conn:
            owners = job_rows.running_owners(conn)
            known = {p.id for p in processes.every(conn)}
        gone = [owner for owner in owners if owner not in known]
        if gone:
            self.release_dead_processes(gone)

    def release_settled_reservations(self) -> None:
        """A job's reservations end with its final state change; any left by a job whose
        resource is settled (or gone) are released here, at start."""
        with self.db.write() as conn:
            for reservation in reservation_rows.every(conn):
                if reservation.process_id is not None:
                    continue
                holder = repo.get(conn, reservation.holder_id)
                if holder is None or holder.lifecycle_state in SETTLED:
                    reservation_rows.release(conn, reservation.holder_id)

    # --- periodic work ----------------------------------------------------------------------

    def housekeeping_once(self) -> None:
        """Purge expired tombstones and retry tokens."""
        with self.db.write() as conn:
            purged = repo.purge_expired(conn, self.clock.now_us())
            retry_tokens.purge_older_than(
                conn, now_us() - limits.RETRY_TOKEN_TTL_SECONDS * 1_000_000
            )
        if purged:
            log.info("purged %d terminated resource(s)", len(purged))

    def _scheduling(self) -> None:
        """Take scheduled backups and expire old ones as the service clock passes their
        instants (whoever moves the clock: real time, or ``ocibv clock`` in another process)."""
        while not self._housekeeping_stop.wait(self.settings.scheduler_interval_seconds):
            try:
                self.scheduler.tick()
            except Exception:
                log.exception("backup scheduler pass failed")

    def advance_clock(self, seconds: float) -> TickReport:
        """``ocibv clock advance``: every scheduled backup and expiry on the way, finished,
        and the store's garbage collected as the simulated weeks pass, at most once per
        ``ADVANCE_GC_GRACE_SECONDS`` of real time — its grace: far longer than a backup takes
        between sealing its chunks and saving its manifest (``BackupScheduler.advance``)."""
        return self.scheduler.advance(
            seconds,
            self.drain_jobs,
            lambda: self.store_housekeeping.collect_garbage(ADVANCE_GC_GRACE_SECONDS),
            ADVANCE_GC_GRACE_SECONDS,
        )

    def drain_jobs(self, timeout: float = 3600.0) -> None:
        """Run queued jobs in this thread until none is queued or running anywhere (jobs other
        processes run are waited for)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.runner.run_one():
                continue
            with self.db.read() as conn:
                if not job_rows.unfinished(conn):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs are still running after {timeout:.0f} s")
            time.sleep(0.02)

    def _housekeeping(self) -> None:
        """Periodic work, done by one process at a time: the holder of the lease."""
        interval = min(60.0, self.settings.tombstone_seconds / 2, self.settings.gc_interval_seconds)
        last_gc = time.monotonic()
        while not self._housekeeping_stop.wait(interval):
            try:
                with self.db.write() as conn:
                    mine = leases.acquire(conn, "housekeeping", self.life.id, HOUSEKEEPING_LEASE)
                if not mine:
                    continue
                self.housekeeping_once()
                if time.monotonic() - last_gc >= self.settings.gc_interval_seconds:
                    last_gc = time.monotonic()
                    log.info("garbage collection by pid %d (the housekeeping lease)", os.getpid())
                    self.store_housekeeping.collect_garbage()
            except Exception:
                log.exception("housekeeping failed")


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    state: str
    resource_id: str
    percent: float
    mb_per_second: float
    bytes_read: int
    note: str | None


def job_view(job: job_rows.Job) -> JobView:
    if job.state == job_rows.DONE:
        percent = 100.0
    elif job.progress_total:
        percent = 100.0 * job.progress_done / job.progress_total
    else:
        percent = 0.0
    end = job.finished_us or job.heartbeat_us or 0
    seconds = (end - job.started_us) / 1e6 if job.started_us and end > job.started_us else 0.0
    rate = job.progress_done / seconds / 1e6 if seconds else 0.0
    return JobView(
        job.id, job.kind, job.state, job.resource_id, percent, rate, job.progress_done, job.note
    )
