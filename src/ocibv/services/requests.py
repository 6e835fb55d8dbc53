"""The typed request details each operation takes: snake_case, already shape-checked by the
API layer (``api/models.py``); absent optional fields are missing or None."""

from __future__ import annotations

from typing import Literal, Required, TypedDict

from ocibv.engine.manifest import BackupType

FreeformTags = dict[str, str]
DefinedTags = dict[str, dict[str, object]]


class Tags(TypedDict, total=False):
    freeform_tags: FreeformTags | None
    defined_tags: DefinedTags | None


class RetentionPeriod(TypedDict):
    retention_time_unit: Literal["DAYS", "YEARS"]
    retention_time_amount: int


class RetentionDetails(Tags, total=False):
    retention_period: RetentionPeriod | None
    is_prevent_deletion_enabled: bool | None
    is_retention_lock_enabled: bool | None
    is_indefinite_retention_enabled: bool | None


class VolumeSource(TypedDict, total=False):
    type: Required[str]
    id: str


class VolumeSettings(Tags, total=False):
    """Fields a volume takes at create and update alike."""

    vpus_per_gb: int | None
    is_auto_tune_enabled: bool | None
    autotune_policies: list[dict[str, object]] | None
    is_reservations_enabled: bool | None


class CreateVolumeDetails(VolumeSettings, total=False):
    compartment_id: Required[str]
    availability_domain: str | None
    display_name: str | None
    size_in_gbs: int | None
    size_in_mbs: int | None
    source_details: VolumeSource | None
    volume_backup_id: str | None
    backup_policy_id: str | None


class UpdateVolumeDetails(VolumeSettings, total=False):
    display_name: str | None
    size_in_gbs: int | None


class VolumeGroupSource(TypedDict, total=False):
    type: Required[str]
    volumeIds: list[str]
    volumeGroupId: str
    volumeGroupBackupId: str


class CreateVolumeGroupDetails(Tags, total=False):
    compartment_id: Required[str]
    availability_domain: Required[str]
    source_details: Required[VolumeGroupSource]
    display_name: str | None
    backup_policy_id: str | None


class UpdateVolumeGroupDetails(Tags, total=False):
    display_name: str | None
    volume_ids: list[str] | None


class CreateVolumeBackupDetails(RetentionDetails, total=False):
    volume_id: Required[str]
    display_name: str | None
    type: BackupType | None


class CreateVolumeGroupBackupDetails(RetentionDetails, total=False):
    volume_group_id: Required[str]
    compartment_id: str | None
    display_name: str | None
    type: BackupType | None


class UpdateBackupDetails(RetentionDetails, total=False):
    """UpdateVolumeBackup and UpdateVolumeGroupBackup."""

    display_name: str | None


class CreateCompartmentDetails(Tags, total=False):
    compartment_id: Required[str]
    name: Required[str]
    description: Required[str]


class UpdateCompartmentDetails(Tags, total=False):
    name: str | None
    description: str | None


class BackupSchedule(TypedDict, total=False):
    """One ``VolumeBackupSchedule`` (``domain.backup_schedules`` reads it)."""

    backup_type: Required[str]
    period: Required[str]
    retention_seconds: Required[int]
    offset_type: str | None
    offset_seconds: int | None
    hour_of_day: int | None
    day_of_week: str | None
    day_of_month: int | None
    month: str | None
    time_zone: str | None
    retention_period: RetentionPeriod | None
    is_prevent_deletion_enabled: bool | None
    is_retention_lock_enabled: bool | None


class CreateVolumeBackupPolicyDetails(Tags, total=False):
    compartment_id: Required[str]
    display_name: str | None
    destination_region: str | None
    schedules: list[BackupSchedule] | None


class UpdateVolumeBackupPolicyDetails(Tags, total=False):
    display_name: str | None
    destination_region: str | None
    schedules: list[BackupSchedule] | None


class CreateVolumeBackupPolicyAssignmentDetails(TypedDict, total=False):
    asset_id: Required[str]
    policy_id: Required[str]
    xrc_kms_key_id: str | None
