"""The backup scheduler: at each instant a policy's schedule names, a SCHEDULED backup of the
asset; and ``advance``, which moves the service clock through every such instant in order.

Rules (docs/design.md, "Backup policies and the scheduler"):

- Exactly once: an instant is handled in one write transaction that records it in
  ``scheduled_runs`` (primary key asset, schedule, instant) and inserts the backup and its
  job; a second process, or the same one after a restart, finds the row and does nothing.
- Precedence: of the schedules of one policy due at the same instant only one runs, the
  highest by ``backup_schedules.precedence`` (longest period); the others are recorded as
  superseded.
- Catch-up: instants missed while nothing ran (server down, clock set far ahead) collapse into
  one backup per schedule, for its latest missed instant, taken now.
- Point in time: a backup taken within ``GRACE_SECONDS`` of its instant is dated at the
  instant (``timeCreated``); a catch-up is dated when it is taken. ``expirationTime`` is
  ``timeCreated + retentionSeconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from ocibv.domain import backup_schedules as sched
from ocibv.domain.errors import IncorrectState
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import AVAILABLE
from ocibv.engine.manifest import BackupType
from ocibv.services.backup_expiry import BackupExpiry, TickReport
from ocibv.services.backup_policies import policies_of
from ocibv.services.backup_policy_assignments import every_assignment
from ocibv.services.context import ServiceContext
from ocibv.services.volume_backups import VolumeBackupService
from ocibv.services.volume_group_backups import VolumeGroupBackupService
from ocibv.store import resources as repo
from ocibv.store import scheduled_runs as runs

log = logging.getLogger("ocibv.scheduler")

GRACE_SECONDS = 60
WEEK_US = 7 * 86400 * 1_000_000
PERIOD_WORDS = {
    "ONE_HOUR": "hourly",
    "ONE_DAY": "daily",
    "ONE_WEEK": "weekly",
    "ONE_MONTH": "monthly",
    "ONE_YEAR": "yearly",
}


@dataclass
class Due:
    """The schedules of one asset's policy that are due, by instant."""

    assignment: repo.Resource
    policy: repo.Resource
    by_instant: dict[int, list[sched.Schedule]]


class BackupScheduler:
    def __init__(
        self,
        ctx: ServiceContext,
        volume_backups: VolumeBackupService,
        group_backups: VolumeGroupBackupService,
        expiry: BackupExpiry,
    ) -> None:
        self.ctx = ctx
        self.volume_backups = volume_backups
        self.group_backups = group_backups
        self.expiry = expiry
        # advance's garbage collection: the service time of the last one this process ran,
        # and how many expiries it has not collected yet (kept across advance calls)
        self._collected_at: int | None = None
        self._collected_real = float("-inf")  # time.monotonic() of that collection
        self._uncollected = 0

    # --- one pass ---------------------------------------------------------------------------

    def tick(self, at_us: int | None = None) -> TickReport:
        """Expire what is due, then take every due scheduled backup, as of ``at_us`` (the
        service's now by default). Never waits for the backups' jobs."""
        at = self.ctx.clock.now_us() if at_us is None else at_us
        report = self.expiry.expire_due(at)
        with self.ctx.db.read() as conn:
            work = self._due(conn, at)
        for due in work:
            self._take(due, at, report)
        if report.created or report.expired:
            self.ctx.wake_jobs()
        return report

    def _due(self, conn: sa.Connection, at: int) -> list[Due]:
        assignments = every_assignment(conn)
        policies = policies_of(conn, {a.source_id for a in assignments if a.source_id})
        work = []
        for assignment in assignments:
            policy = policies.get(assignment.source_id or "")
            if policy is None:
                continue
            by_instant = self._due_for(conn, assignment, policy, at)
            if by_instant:
                work.append(Due(assignment, policy, by_instant))
        return work

    def _due_for(
        self, conn: sa.Connection, assignment: repo.Resource, policy: repo.Resource, at: int
    ) -> dict[int, list[sched.Schedule]]:
        asset_id = assignment.parent_id or ""
        last = runs.last_instants(conn, asset_id)
        start = max(assignment.created_us, int(policy.attrs.get("schedules_since_us") or 0))
        by_instant: dict[int, list[sched.Schedule]] = {}
        unique = {sched.schedule_key(s): s for s in policy.attrs.get("schedules") or []}
        for key, schedule in unique.items():  # two identical schedules are one
            zone = sched.zone_of(schedule, self.ctx.settings.region)
            instant = sched.latest_at_or_before(schedule, zone, at)
            if instant > max(last.get(key, 0), start):
                by_instant.setdefault(instant, []).append(schedule)
        return by_instant

    def _take(self, due: Due, at: int, report: TickReport) -> None:
        """Handle the asset's earliest due instant (one backup at a time per asset: the next
        waits for a later pass, as the asset is held until this backup has read it)."""
        asset_id = due.assignment.parent_id or ""
        try:
            with self.ctx.db.write() as conn:
                # Processes racing for the asset's instant queue here (a row lock; SQLite's
                # write transaction already excludes them); each then reads what is handled.
                repo.lock(conn, [asset_id])
                fresh = self._due_for(conn, due.assignment, due.policy, at)
                if not fresh:
                    return  # another process handled it
                instant = min(fresh)
                schedules = fresh[instant]
                chosen = sched.winner(schedules)
                for other in schedules:
                    if other is not chosen:
                        runs.record(
                            conn, asset_id, sched.schedule_key(other), instant,
                            due.policy.id, runs.SUPERSEDED,
                        )
                backup = self._create(conn, asset_id, chosen, instant, at)
                runs.record(
                    conn, asset_id, sched.schedule_key(chosen), instant, due.policy.id,
                    runs.BACKED_UP if backup else runs.SKIPPED, backup.id if backup else None,
                )
                if backup is None:
                    return
        except IncorrectState as exc:  # the asset is busy: a later pass takes it
            log.info("scheduled backup of %s waits: %s", asset_id, exc.message)
            report.busy.append(asset_id)
            return
        except sa.exc.IntegrityError:  # the instant's row exists: another process took it
            log.info("scheduled backup of %s: another process took the instant", asset_id)
            return
        report.created.append(backup.id)

    def _create(
        self, conn: sa.Connection, asset_id: str, schedule: sched.Schedule, instant: int, at: int
    ) -> repo.Resource | None:
        asset = repo.get(conn, asset_id)
        if asset is None or asset.lifecycle_state not in (AVAILABLE,):
            if asset is not None and asset.lifecycle_state in ("PROVISIONING", "RESTORING"):
                raise IncorrectState(f"{asset_id} is {asset.lifecycle_state}")
            return None
        created_us = instant if at - instant <= GRACE_SECONDS * 1_000_000 else at
        stamp = datetime.fromtimestamp(created_us / 1e6, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")
        name = f"{asset.display_name} {PERIOD_WORDS[schedule['period']]} {stamp}"
        scheduled: repo.Attrs = {
            "source_type": "SCHEDULED",
            "expiration_us": created_us + int(schedule["retention_seconds"]) * 1_000_000,
        }
        retention_values = {
            "retention_period": schedule.get("retention_period"),
            "is_prevent_deletion_enabled": schedule.get("is_prevent_deletion_enabled"),
            "is_retention_lock_enabled": schedule.get("is_retention_lock_enabled"),
            "is_indefinite_retention_enabled": None,
        }
        create = (
            self.group_backups.create_scheduled_volume_group_backup
            if asset.kind == Kind.VOLUME_GROUP
            else self.volume_backups.create_scheduled_volume_backup
        )
        return create(
            conn,
            asset,
            requested=BackupType(schedule["backup_type"]),
            display_name=name,
            created_us=created_us,
            retention_values=retention_values,
            scheduled=scheduled,
        )

    # --- what comes next --------------------------------------------------------------------

    def next_event_us(self, after_us: int) -> int | None:
        """The first instant after ``after_us`` at which a schedule fires or a scheduled
        backup expires (or its retention lock ends)."""
        candidates: list[int] = []
        with self.ctx.db.read() as conn:
            assignments = every_assignment(conn)
            policies = policies_of(conn, {a.source_id for a in assignments if a.source_id})
            for assignment in assignments:
                policy = policies.get(assignment.source_id or "")
                for schedule in policy.attrs.get("schedules") or [] if policy else []:
                    zone = sched.zone_of(schedule, self.ctx.settings.region)
                    candidates.append(sched.next_after(schedule, zone, after_us))
        candidates.extend(t for t in self.expiry.upcoming() if t > after_us)
        return min(candidates) if candidates else None

    # --- advancing the clock ----------------------------------------------------------------

    def advance(
        self,
        seconds: float,
        drain: Callable[[], None],
        collect: Callable[[], object] | None = None,
        collect_grace_seconds: float = 0.0,
    ) -> TickReport:
        """Move the service clock forward by ``seconds``, stopping at every instant a schedule
        fires or a backup expires, in order: at each, take the backups and expiries due and
        ``drain`` (wait until their jobs are done) before moving on.

        ``collect`` (garbage collection of the store, with a grace of
        ``collect_grace_seconds`` of real time) runs when backups expired since this process
        last collected and both a simulated week and the grace in real time have passed
        since then — a collection sooner than the grace after the previous one could delete
        nothing that one condemned, and each reads every manifest; checked at every step.
        At the end of the first ``advance`` of a process it also runs if anything expired
        (the grace permitting later). A simulated year would otherwise keep a year of
        deleted chunks on disk until the hourly collection of real time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        target = self.ctx.clock.now_us() + int(seconds * 1_000_000)
        report = TickReport()
        first = self._collected_at is None
        if self._collected_at is None:
            self._collected_at = self.ctx.clock.now_us()

        def maybe_collect(at: int, *, end: bool) -> None:
            if collect is None or not self._uncollected or self._collected_at is None:
                return
            spaced = time.monotonic() - self._collected_real >= collect_grace_seconds
            if (spaced and at - self._collected_at >= WEEK_US) or (end and (first or spaced)):
                collect()
                self._collected_at, self._uncollected = at, 0
                self._collected_real = time.monotonic()

        while True:
            upcoming = self.next_event_us(self.ctx.clock.now_us())
            if upcoming is None or upcoming > target:
                break
            if upcoming > self.ctx.clock.now_us():  # never backward, even by a moment
                self.ctx.clock.set_us(upcoming)
            done = self.step(upcoming, drain)
            report.add(done)
            self._uncollected += len(done.expired)
            maybe_collect(upcoming, end=False)
        if target > self.ctx.clock.now_us():
            self.ctx.clock.set_us(target)
        done = self.step(target, drain)
        report.add(done)
        self._uncollected += len(done.expired)
        maybe_collect(target, end=True)
        return report

    def step(self, at: int, drain: Callable[[], None]) -> TickReport:
        """Everything due at ``at``, finished: a second pass takes what waited for the first
        pass's jobs (a busy asset, a backup still being created when it expired)."""
        report = self.tick(at)
        if not (report.created or report.expired or report.busy):
            return report
        drain()
        if report.busy:
            again = self.tick(at)
            drain()
            report.busy = again.busy
            again.busy = []
            report.add(again)
        with self.ctx.db.write() as conn:  # tombstones end by the service clock too
            repo.purge_expired(conn, at)
        return report
