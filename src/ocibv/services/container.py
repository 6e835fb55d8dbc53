"""Wires the services together with the database and the job runner."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ocibv.config import Settings
from ocibv.domain import limits
from ocibv.jobs.runner import Handler, JobRunner
from ocibv.services.backup_catalog import BackupCatalog
from ocibv.services.backup_runs import BackupRuns
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
from ocibv.store import resources as repo
from ocibv.store import retry_tokens
from ocibv.store.database import Database, now_us

log = logging.getLogger("ocibv")


def _secret(path: Path) -> bytes:
    """A per-data-dir secret (page tokens), created once with mode 0600."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(secrets.token_bytes(32))
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_bytes()


class Services:
    """Every service of one data directory. ``start()`` migrates and starts the workers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if not settings.data_dir.exists():  # volumes, backups and keys: the owner's alone
            settings.data_dir.mkdir(parents=True, mode=0o700)
        self.db = Database(settings.database_url)
        self.ctx = ServiceContext(settings, self.db)
        tokens = PageTokens(_secret(settings.data_dir / "secret.key"))
        self.identity = IdentityService(self.ctx, tokens)
        self.volumes = VolumeService(self.ctx, tokens)
        self.volume_groups = VolumeGroupService(self.ctx, tokens, self.volumes)
        self.volume_data = VolumeDataAccess(self.ctx)
        self.catalog = BackupCatalog(settings.store_url)
        self.backup_runs = BackupRuns(self.ctx, self.catalog)
        self.volume_backups = VolumeBackupService(self.ctx, tokens, self.backup_runs)
        self.volume_group_backups = VolumeGroupBackupService(self.ctx, tokens, self.backup_runs)
        self.store_housekeeping = StoreHousekeeping(self.ctx, self.catalog, self.backup_runs)
        self.volumes.backups = _Restorer(self.volume_backups, self.backup_runs)
        self.volume_groups.restore_volumes = self.volume_group_backups.restore_group
        self.runner = JobRunner(
            self.db,
            self.job_handlers(),
            workers=settings.workers,
            on_failure=self._job_failed,
            delay_seconds=settings.job_delay_seconds,
        )
        self.ctx.wake_jobs = self.runner.wake
        self._housekeeping_stop = threading.Event()

    def job_handlers(self) -> dict[str, Handler]:
        return {
            "create_volume": self.volumes.run_create_volume,
            "delete_volume": self.volumes.run_delete_volume,
            "create_volume_group": self.volume_groups.run_create_volume_group,
            "delete_volume_group": self.volume_groups.run_delete_volume_group,
            "create_volume_backup": self.volume_backups.run_create_volume_backup,
            "delete_volume_backup": self.volume_backups.run_delete_volume_backup,
            "create_volume_group_backup": self.volume_group_backups.run_create_volume_group_backup,
            "delete_volume_group_backup": self.volume_group_backups.run_delete_volume_group_backup,
            "delete_compartment": lambda job: self.identity.finish_delete_compartment(
                job.job.resource_id
            ),
        }

    def _job_failed(self, job: job_rows.Job, exc: BaseException) -> None:
        with self.db.read() as conn:
            res = repo.get(conn, job.resource_id)
        if res is None:
            return
        if res.kind == "volume":
            self.volumes.mark_faulty(res.id)
        elif res.kind == "volumegroup":
            self.volume_groups.mark_faulty(res.id)
        elif job.kind == "create_volume_backup":
            self.volume_backups.fail_create_volume_backup(res.id)
        elif job.kind == "create_volume_group_backup":
            self.volume_group_backups.fail_create_volume_group_backup(res.id)

    def jobs_overview(self, limit: int = 20) -> list[JobView]:
        with self.db.read() as conn:
            return [job_view(j) for j in job_rows.recent(conn, limit)]

    def migrate(self) -> None:
        self.db.migrate()

    def start(self) -> None:
        self.migrate()
        self.volume_data.clear_stale_marks()
        self.runner.start()
        threading.Thread(target=self._housekeeping, name="ocibv-housekeeping", daemon=True).start()

    def stop(self) -> None:
        self._housekeeping_stop.set()
        self.runner.stop()
        self.db.dispose()

    def housekeeping_once(self) -> None:
        """Purge expired tombstones and retry tokens."""
        now = now_us()
        with self.db.write() as conn:
            purged = repo.purge_expired(conn, now)
            retry_tokens.purge_older_than(conn, now - limits.RETRY_TOKEN_TTL_SECONDS * 1_000_000)
        if purged:
            log.info("purged %d terminated resource(s)", len(purged))

    def _housekeeping(self) -> None:
        interval = min(60.0, self.settings.tombstone_seconds / 2, self.settings.gc_interval_seconds)
        last_gc = time.monotonic()
        while not self._housekeeping_stop.wait(interval):
            try:
                self.housekeeping_once()
                if time.monotonic() - last_gc >= self.settings.gc_interval_seconds:
                    last_gc = time.monotonic()
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
    return JobView(job.id, job.kind, job.state, job.resource_id, percent, rate)


class _Restorer:
    """What VolumeService needs to create a volume from a backup."""

    def __init__(self, backups: VolumeBackupService, runs: BackupRuns) -> None:
        self.restore_source = backups.restore_source
        self.restore_image = runs.restore_image
