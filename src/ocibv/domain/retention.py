"""Retention rules for backups (spec §3.9).

- ``retentionPeriod`` defines a window from the backup's point in time; its end is
  ``timeRetentionExpiresAt``.
- ``isPreventDeletionEnabled``: no delete until the window ends (no window: until cleared).
- ``isRetentionLockEnabled``: compliance lock; needs a window; until it ends the backup can
  neither be deleted nor weakened (window shortened or removed, either flag turned off).
- ``isIndefiniteRetentionEnabled``: legal hold; no delete while set, whatever the window.
  Clearing it is allowed even under a lock (a hold is lifted by its own decision, not by
  the lock) — our reading; Oracle does not say.

A refused delete or weakening is a 409 ``Conflict`` (never ``IncorrectState``: clients retry
that one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ocibv.domain.errors import Conflict, InvalidParameter

MAX_DAYS = 36500
MAX_YEARS = 100

# The retention fields of a backup (snake_case attribute names).
RETENTION_FIELDS = (
    "retention_period",
    "is_prevent_deletion_enabled",
    "is_retention_lock_enabled",
    "is_indefinite_retention_enabled",
)


def point_in_time(created_us: int) -> datetime:
    """A backup's point in time (its ``timeCreated``), from which its retention runs."""
    return datetime.fromtimestamp(created_us / 1e6, tz=UTC)


@dataclass(frozen=True)
class Retention:
    unit: str | None = None  # "DAYS" | "YEARS" | None (no window)
    amount: int | None = None
    prevent_deletion: bool = False
    locked: bool = False
    indefinite: bool = False

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, object]) -> Retention:
        period = attrs.get("retention_period") or {}
        assert isinstance(period, dict)
        return cls(
            unit=period.get("retention_time_unit"),
            amount=period.get("retention_time_amount"),
            prevent_deletion=bool(attrs.get("is_prevent_deletion_enabled")),
            locked=bool(attrs.get("is_retention_lock_enabled")),
            indefinite=bool(attrs.get("is_indefinite_retention_enabled")),
        )

    def expires_at(self, point_in_time: datetime) -> datetime | None:
        if self.unit is None or self.amount is None:
            return None
        if self.unit == "DAYS":
            return point_in_time + timedelta(days=self.amount)
        try:
            return point_in_time.replace(year=point_in_time.year + self.amount)
        except ValueError:  # 29 February
            return point_in_time.replace(year=point_in_time.year + self.amount, day=28)


def validate(retention: Retention) -> None:
    if retention.unit is not None:
        limit = MAX_DAYS if retention.unit == "DAYS" else MAX_YEARS
        if retention.amount is None or not 1 <= retention.amount <= limit:
            raise InvalidParameter(
                f"retentionPeriod.retentionTimeAmount: must be 1 to {limit} {retention.unit}."
            )
    if retention.locked and retention.unit is None:
        raise InvalidParameter("isRetentionLockEnabled: a retention lock needs a retentionPeriod.")


def _in_window(expires: datetime | None, now: datetime) -> bool:
    return expires is None or now < expires


def check_delete(retention: Retention, expires: datetime | None, now: datetime, what: str) -> None:
    """Raise 409 Conflict if ``what`` may not be deleted now."""
    if retention.indefinite:
        raise Conflict(
            f"{what} is under indefinite retention (legal hold); clear "
            "isIndefiniteRetentionEnabled before deleting it."
        )
    if retention.locked and _in_window(expires, now):
        raise Conflict(f"{what} is retention-locked until {_fmt(expires)}; it cannot be deleted.")
    if retention.prevent_deletion and _in_window(expires, now):
        until = f" until {_fmt(expires)}" if expires else ""
        raise Conflict(
            f"{what} has deletion prevention enabled{until}; "
            "disable isPreventDeletionEnabled to delete it."
        )


def check_update(
    old: Retention,
    new: Retention,
    old_expires: datetime | None,
    new_expires: datetime | None,
    now: datetime,
    what: str,
) -> None:
    """Raise 409 Conflict if a retention lock forbids going from ``old`` to ``new``."""
    validate(new)
    if not (old.locked and _in_window(old_expires, now)):
        return
    if not new.locked:
        raise Conflict(
            f"{what} is retention-locked until {_fmt(old_expires)}; the lock cannot be removed."
        )
    if old.prevent_deletion and not new.prevent_deletion:
        raise Conflict(
            f"{what} is retention-locked; isPreventDeletionEnabled cannot be turned off."
        )
    if new_expires is None or (old_expires is not None and new_expires < old_expires):
        raise Conflict(
            f"{what} is retention-locked until {_fmt(old_expires)}; its retention "
            "period cannot be shortened."
        )


def _fmt(moment: datetime | None) -> str:
    if moment is None:
        return "it is cleared"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expires_us(attrs: Mapping[str, object], created_us: int) -> int | None:
    """``timeRetentionExpiresAt`` of a backup created at ``created_us``, in microseconds."""
    expires = Retention.from_attrs(attrs).expires_at(point_in_time(created_us))
    return int(expires.timestamp() * 1_000_000) if expires else None
