"""Request bodies of the backup policy operations (spec §2.7, §2.8), checked at the edge."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ocibv.api.models import Body, DisplayName, Ocid, RetentionPeriod, Tagged

Day = Literal["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
Month = Literal[
    "JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE",
    "JULY", "AUGUST", "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER",
]


class VolumeBackupSchedule(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", alias_generator=to_camel)
    backup_type: Literal["FULL", "INCREMENTAL"]
    period: Literal["ONE_HOUR", "ONE_DAY", "ONE_WEEK", "ONE_MONTH", "ONE_YEAR"]
    retention_seconds: int
    offset_type: Literal["STRUCTURED", "NUMERIC_SECONDS"] | None = None
    offset_seconds: int | None = None
    hour_of_day: int | None = Field(default=None, ge=0, le=23)
    day_of_week: Day | None = None
    day_of_month: int | None = Field(default=None, ge=1, le=31)
    month: Month | None = None
    time_zone: Literal["UTC", "REGIONAL_DATA_CENTER_TIME"] | None = None
    retention_period: RetentionPeriod | None = None
    is_prevent_deletion_enabled: bool | None = None
    is_retention_lock_enabled: bool | None = None


class CreateVolumeBackupPolicyDetails(Tagged):
    compartment_id: Ocid
    display_name: DisplayName | None = None
    destination_region: str | None = None
    schedules: list[VolumeBackupSchedule] | None = Field(default=None, max_length=64)


class UpdateVolumeBackupPolicyDetails(Tagged):
    display_name: DisplayName | None = None
    destination_region: str | None = None
    schedules: list[VolumeBackupSchedule] | None = Field(default=None, max_length=64)


class CreateVolumeBackupPolicyAssignmentDetails(Body):
    asset_id: Ocid
    policy_id: Ocid
    xrc_kms_key_id: Ocid | None = None
