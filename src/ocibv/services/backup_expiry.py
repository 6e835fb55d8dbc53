"""Expiry of scheduled backups: once its ``expirationTime`` has passed, a SCHEDULED backup
(a volume group backup with its members) is deleted through the normal delete path.

Retention rules still hold: a backup that is retention-locked, protected from deletion or
under a legal hold is kept until they allow it, and says so in its ``systemTags``
(``ocibv.expiry``); expiry tries again on every pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlalchemy as sa

from ocibv.domain.errors import Conflict, IncorrectState
from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import AVAILABLE, FAULTY
from ocibv.services.context import Caller, ServiceContext
from ocibv.services.volume_backups import VolumeBackupService
from ocibv.services.volume_group_backups import VolumeGroupBackupService
from ocibv.store import resources as repo
from ocibv.store.tables import resources

log = logging.getLogger("ocibv.expiry")

EXPIRABLE_STATES = (AVAILABLE, FAULTY)
SCHEDULER_USER = "ocibv-scheduler"


@dataclass
class TickReport:
    created: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # backup id -> why expiry waits
    busy: list[str] = field(default_factory=list)  # assets that could not be backed up yet

    def add(self, other: TickReport) -> None:
        self.created.extend(other.created)
        self.expired.extend(other.expired)
        self.kept.update(other.kept)
        self.busy.extend(other.busy)


_ATTRS = resources.c.attrs


def _microseconds(key: str) -> sa.ColumnElement[int]:
    """A µs timestamp from the attributes as a 64-bit integer (``as_integer()`` casts to a
    32-bit INTEGER on PostgreSQL, which no timestamp in µs fits)."""
    return sa.cast(_ATTRS[key].as_string(), sa.BigInteger)


# Built once (it runs on every scheduler pass): live scheduled backups, group members left out.
_SCHEDULED = sa.select(
    resources.c.id,
    resources.c.kind,
    resources.c.tenancy_id,
    _microseconds("expiration_us"),
    _microseconds("retention_expires_us"),
).where(
    resources.c.kind.in_([Kind.VOLUME_BACKUP, Kind.VOLUME_GROUP_BACKUP]),
    resources.c.lifecycle_state.in_(EXPIRABLE_STATES),
    _microseconds("expiration_us").is_not(None),
    sa.or_(
        resources.c.kind == Kind.VOLUME_GROUP_BACKUP,
        _ATTRS["volume_group_backup_id"].as_string().is_(None),
    ),
)


@dataclass(frozen=True)
class Expiring:
    id: str
    kind: str
    tenancy_id: str
    expiration_us: int
    retention_expires_us: int | None


class BackupExpiry:
    def __init__(
        self,
        ctx: ServiceContext,
        volume_backups: VolumeBackupService,
        group_backups: VolumeGroupBackupService,
    ) -> None:
        self.ctx = ctx
        self.volume_backups = volume_backups
        self.group_backups = group_backups

    def scheduled_backups(self) -> list[Expiring]:
        """Live scheduled backups that expire on their own (group members go with their
        group, so they are not listed); one narrow query, as it runs on every pass."""
        with self.ctx.db.read() as conn:
            rows = conn.execute(_SCHEDULED).all()
        return [Expiring(*row) for row in rows]

    def upcoming(self) -> list[int]:
        """When each live scheduled backup expires (or, if retention keeps it, when that
        retention ends)."""
        times = []
        for res in self.scheduled_backups():
            times.append(res.expiration_us)
            if res.retention_expires_us is not None:
                times.append(res.retention_expires_us)
        return times

    def expire_due(self, at_us: int) -> TickReport:
        report = TickReport()
        for res in self.scheduled_backups():
            if res.expiration_us > at_us:
                continue
            caller = Caller(res.tenancy_id, SCHEDULER_USER)
            try:
                if res.kind == Kind.VOLUME_GROUP_BACKUP:
                    self.group_backups.delete_volume_group_backup(caller, res.id, None)
                else:
                    self.volume_backups.delete_volume_backup(caller, res.id, None)
            except Conflict as exc:  # retention keeps it: say so, try again later
                report.kept[res.id] = exc.message
                self._note(res.id, f"expired; kept: {exc.message}")
            except IncorrectState as exc:  # being read by a restore: a later pass
                report.busy.append(res.id)
                log.info("expiry of %s waits: %s", res.id, exc.message)
            else:
                report.expired.append(res.id)
        return report

    def _note(self, backup_id: str, message: str) -> None:
        with self.ctx.db.write() as conn:
            res = repo.get(conn, backup_id)
            if res is None:
                return
            for row in [res, *repo.get_many(conn, res.volume_backup_ids).values()]:
                tags = dict(row.attrs.get("system_tags") or {})
                if tags.get("ocibv", {}).get("expiry") == message:
                    continue
                tags["ocibv"] = {**tags.get("ocibv", {}), "expiry": message}
                repo.update(conn, row, attrs=dict(row.attrs, system_tags=tags))
