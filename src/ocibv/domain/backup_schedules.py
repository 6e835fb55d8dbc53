"""Backup schedules (``VolumeBackupSchedule``): validation, the instants a schedule fires at,
which schedule wins when several fall on one instant, and Oracle's gold, silver and bronze.

A schedule is kept as a dict of its snake_case fields. Time arithmetic happens in the
schedule's time zone (``UTC`` or the region's data-center zone) and yields instants as
microseconds since the epoch. Periods, in that zone:

- ``ONE_HOUR``: the hour; ``ONE_DAY``: the day from 00:00; ``ONE_WEEK``: the week from
  Sunday 00:00 (so that Oracle's weekly schedule, offset 0, runs on Sunday as documented);
  ``ONE_MONTH``: from the 1st 00:00; ``ONE_YEAR``: from 1 January 00:00.
- ``NUMERIC_SECONDS`` (also when ``offsetType`` is absent): the period's start +
  ``offsetSeconds``. ``STRUCTURED``: ``hourOfDay`` (default 0), ``dayOfWeek`` (default
  SUNDAY), ``dayOfMonth`` (default 1; a day the month lacks means its last day) and ``month``
  (default JANUARY) place the instant inside the period.
"""

from __future__ import annotations

import calendar
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ocibv.domain.errors import InvalidParameter

Schedule = dict[str, Any]

PERIODS = ("ONE_HOUR", "ONE_DAY", "ONE_WEEK", "ONE_MONTH", "ONE_YEAR")
# Shortest length of each period in seconds (what an offset must stay below, and the least
# retention a schedule may have).
PERIOD_SECONDS = {
    "ONE_HOUR": 3600,
    "ONE_DAY": 86400,
    "ONE_WEEK": 7 * 86400,
    "ONE_MONTH": 28 * 86400,
    "ONE_YEAR": 365 * 86400,
}
DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
MONTHS = tuple(m.upper() for m in calendar.month_name[1:])
MIN_RETENTION, MAX_RETENTION = 3600, 1_576_800_000
MAX_OFFSET = 31_532_400

# Which fields a STRUCTURED schedule of each period may set.
STRUCTURED_FIELDS = {
    "ONE_HOUR": (),
    "ONE_DAY": ("hour_of_day",),
    "ONE_WEEK": ("hour_of_day", "day_of_week"),
    "ONE_MONTH": ("hour_of_day", "day_of_month"),
    "ONE_YEAR": ("hour_of_day", "day_of_month", "month"),
}
_CAMEL = {
    "hour_of_day": "hourOfDay",
    "day_of_week": "dayOfWeek",
    "day_of_month": "dayOfMonth",
    "month": "month",
    "offset_seconds": "offsetSeconds",
    "retention_seconds": "retentionSeconds",
}

# The data-center time zone of each region (REGIONAL_DATA_CENTER_TIME).
REGION_ZONES = {
    "us-phoenix-1": "America/Phoenix",
    "us-ashburn-1": "America/New_York",
    "eu-frankfurt-1": "Europe/Berlin",
}


def zone_of(schedule: Mapping[str, Any], region: str) -> tzinfo:
    if schedule.get("time_zone") != "REGIONAL_DATA_CENTER_TIME":
        return UTC
    try:
        return ZoneInfo(REGION_ZONES.get(region, "UTC"))
    except ZoneInfoNotFoundError:  # no tz database on this host: UTC, rather than fail
        return UTC


def is_structured(schedule: Mapping[str, Any]) -> bool:
    return schedule.get("offset_type") == "STRUCTURED"


# --- validation --------------------------------------------------------------------------


def validate(schedules: Sequence[Schedule]) -> None:
    """400 InvalidParameter naming ``schedules[i].<field>`` for a schedule OCI would refuse:
    a structured field its period has no use for, an offset outside the period, a retention
    outside 1 hour to 50 years, not whole hours, or shorter than the period itself."""
    for i, schedule in enumerate(schedules):
        _validate_one(schedule, f"schedules[{i}]")


def _validate_one(schedule: Schedule, where: str) -> None:
    period = schedule["period"]
    retention = schedule["retention_seconds"]
    if not MIN_RETENTION <= retention <= MAX_RETENTION or retention % 3600:
        raise InvalidParameter(
            f"{where}.retentionSeconds: must be a multiple of 3600 from {MIN_RETENTION} to "
            f"{MAX_RETENTION}."
        )
    if retention < PERIOD_SECONDS[period]:
        raise InvalidParameter(
            f"{where}.retentionSeconds: {retention} is shorter than the period {period} "
            f"({PERIOD_SECONDS[period]} s); a backup would expire before the next one."
        )
    if is_structured(schedule):
        allowed = STRUCTURED_FIELDS[period]
        for name in ("hour_of_day", "day_of_week", "day_of_month", "month"):
            if schedule.get(name) is not None and name not in allowed:
                raise InvalidParameter(
                    f"{where}.{_CAMEL[name]}: a STRUCTURED {period} schedule does not take it "
                    f"(it takes {', '.join(_CAMEL[n] for n in allowed) or 'no fields'})."
                )
        if schedule.get("offset_seconds"):
            raise InvalidParameter(
                f"{where}.offsetSeconds: a STRUCTURED schedule places its backup with "
                "hourOfDay, dayOfWeek, dayOfMonth and month; omit offsetSeconds."
            )
        return
    for name in ("hour_of_day", "day_of_week", "day_of_month", "month"):
        if schedule.get(name) is not None:
            raise InvalidParameter(
                f"{where}.{_CAMEL[name]}: only a STRUCTURED schedule takes it; set offsetType "
                "STRUCTURED or use offsetSeconds."
            )
    offset = schedule.get("offset_seconds") or 0
    if offset % 3600 or not 0 <= offset <= MAX_OFFSET:
        raise InvalidParameter(
            f"{where}.offsetSeconds: must be a multiple of 3600 from 0 to {MAX_OFFSET}."
        )
    if offset >= PERIOD_SECONDS[period]:
        raise InvalidParameter(
            f"{where}.offsetSeconds: {offset} is outside the period {period} "
            f"(less than {PERIOD_SECONDS[period]} s)."
        )


def schedule_key(schedule: Mapping[str, Any]) -> str:
    """A stable name for a schedule (its fields' hash): the scheduler's bookkeeping survives
    policy updates that keep a schedule unchanged."""
    text = json.dumps({k: v for k, v in schedule.items() if v is not None}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- instants ----------------------------------------------------------------------------


def _us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _period_start(local: datetime, period: str) -> datetime:
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "ONE_HOUR":
        return local.replace(minute=0, second=0, microsecond=0)
    if period == "ONE_DAY":
        return day
    if period == "ONE_WEEK":
        return day - timedelta(days=(day.weekday() + 1) % 7)
    if period == "ONE_MONTH":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def _shift(start: datetime, period: str, n: int) -> datetime:
    """The start of the period ``n`` periods after (or before) the one starting at ``start``."""
    if period == "ONE_HOUR":
        return start + timedelta(hours=n)
    if period == "ONE_DAY":
        return start + timedelta(days=n)
    if period == "ONE_WEEK":
        return start + timedelta(weeks=n)
    if period == "ONE_MONTH":
        months = start.year * 12 + start.month - 1 + n
        return start.replace(year=months // 12, month=months % 12 + 1)
    return start.replace(year=start.year + n)


def _fire_in(start: datetime, schedule: Mapping[str, Any]) -> datetime:
    """The instant the schedule fires in the period that starts at ``start`` (local time)."""
    period = schedule["period"]
    if not is_structured(schedule):
        offset = timedelta(seconds=schedule.get("offset_seconds") or 0)
        # Offsets count wall-clock time from the period's start (a DST change inside the
        # offset does not move the backup's local hour).
        return (start.replace(tzinfo=None) + offset).replace(tzinfo=start.tzinfo)
    hour = schedule.get("hour_of_day") or 0
    if period == "ONE_HOUR":
        return start
    if period == "ONE_DAY":
        return start.replace(hour=hour)
    if period == "ONE_WEEK":
        day = DAYS.index(schedule.get("day_of_week") or "SUNDAY")
        return (start + timedelta(days=(day + 1) % 7)).replace(hour=hour)
    month = start.month
    if period == "ONE_YEAR":
        month = MONTHS.index(schedule.get("month") or "JANUARY") + 1
    last = calendar.monthrange(start.year, month)[1]
    day_of_month = min(schedule.get("day_of_month") or 1, last)
    return start.replace(month=month, day=day_of_month, hour=hour)


def _instant(start: datetime, schedule: Mapping[str, Any]) -> int:
    local = _fire_in(start, schedule)
    return _us(local.astimezone(UTC))


def latest_at_or_before(schedule: Mapping[str, Any], zone: tzinfo, at_us: int) -> int:
    """The schedule's last instant at or before ``at_us``."""
    local = datetime.fromtimestamp(at_us / 1e6, tz=UTC).astimezone(zone)
    start = _period_start(local.replace(tzinfo=None), schedule["period"]).replace(tzinfo=zone)
    for n in (0, -1, -2):
        instant = _instant(_shift(start, schedule["period"], n), schedule)
        if instant <= at_us:
            return instant
    raise AssertionError("a period holds one instant")  # pragma: no cover


def next_after(schedule: Mapping[str, Any], zone: tzinfo, after_us: int) -> int:
    """The schedule's first instant strictly after ``after_us``."""
    local = datetime.fromtimestamp(after_us / 1e6, tz=UTC).astimezone(zone)
    start = _period_start(local.replace(tzinfo=None), schedule["period"]).replace(tzinfo=zone)
    for n in (0, 1, 2):
        instant = _instant(_shift(start, schedule["period"], n), schedule)
        if instant > after_us:
            return instant
    raise AssertionError("a period holds one instant")  # pragma: no cover


# --- precedence --------------------------------------------------------------------------


def precedence(schedule: Mapping[str, Any]) -> tuple[int, int, int]:
    """Sort key of the schedule that runs when several fall on one instant (highest wins):
    the longest period (OCI documents that a yearly backup is taken instead of the monthly,
    weekly and daily ones due at the same time), then FULL over INCREMENTAL, then the
    longest retention."""
    return (
        PERIODS.index(schedule["period"]),
        1 if schedule["backup_type"] == "FULL" else 0,
        int(schedule["retention_seconds"]),
    )


def winner(schedules: Sequence[Schedule]) -> Schedule:
    return max(schedules, key=precedence)


# --- Oracle-defined policies -------------------------------------------------------------

ORACLE_CREATED = "2017-01-01T00:00:00Z"


def _oracle(period: str, retention: int, **fields: Any) -> Schedule:
    return {
        "backup_type": "INCREMENTAL",
        "period": period,
        "offset_type": "STRUCTURED",
        "offset_seconds": 0,
        "hour_of_day": 0,
        "retention_seconds": retention,
        "time_zone": "UTC",
        **fields,
    }


# Retention values are those Oracle's API returns for these schedules (spec §3.10).
_DAILY = _oracle("ONE_DAY", 604_800)
_WEEKLY = _oracle("ONE_WEEK", 2_419_200, day_of_week="SUNDAY")
_MONTHLY = _oracle("ONE_MONTH", 31_560_000, day_of_month=1)
_YEARLY = _oracle("ONE_YEAR", 157_680_000, day_of_month=1, month="JANUARY")

ORACLE_POLICIES: dict[str, tuple[str, list[Schedule]]] = {
    # id: (displayName, schedules) — region-less OCIDs, the same in every tenancy.
    "ocid1.volumebackuppolicy.oc1..aaaaaaaagoldocibvoracledefinedpolicy": (
        "gold",
        [_DAILY, _WEEKLY, _MONTHLY, _YEARLY],
    ),
    "ocid1.volumebackuppolicy.oc1..aaaaaaaasilverocibvoracledefinedpolicy": (
        "silver",
        [_WEEKLY, _MONTHLY, _YEARLY],
    ),
    "ocid1.volumebackuppolicy.oc1..aaaaaaaabronzeocibvoracledefinedpolicy": (
        "bronze",
        [_MONTHLY, _YEARLY],
    ),
}
