"""Request bodies (spec §2): shapes, types, enums and ranges, checked at the edge.

Strict: a string is never taken for a number, and no declared field may be ``null`` (Oracle's
contract has no nullable property: a field is given or omitted). Unknown keys are ignored (as
the SDK ignores unknown response keys); fields of features that are not built are refused by
``refuse_unbuilt``. Tags follow OCI's tag limits (``domain.limits``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from ocibv.domain import limits, retention
from ocibv.domain.errors import InvalidParameter

DisplayName = Annotated[str, Field(min_length=1, max_length=limits.MAX_DISPLAY_NAME)]
Ocid = Annotated[str, Field(min_length=1, max_length=255)]
TagKey = Annotated[str, Field(min_length=1, max_length=limits.MAX_TAG_KEY)]
TagValue = Annotated[str, Field(max_length=limits.MAX_TAG_VALUE)]
FreeformTags = dict[TagKey, TagValue]
DefinedTags = dict[TagKey, dict[TagKey, TagValue]]


class Body(BaseModel):
    model_config = ConfigDict(
        strict=True, extra="ignore", alias_generator=to_camel, populate_by_name=False
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                alias = field.alias or name
                if alias in data and data[alias] is None:
                    raise InvalidParameter(
                        f"{alias}: must not be null; omit the field to leave it unchanged."
                    )
        return data

    def fields(self) -> Any:
        """The given fields, snake_case, as the services take them: the shape of the
        operation's ``services.requests`` TypedDict, which the service's signature names."""
        return self.model_dump(exclude_unset=True, by_alias=False)


class Tagged(Body):
    """A body with tags: string keys and values within OCI's lengths, at most
    ``limits.MAX_TAGS`` free-form and defined tags together, at most ``limits.MAX_TAG_BYTES``
    of tag JSON."""

    freeform_tags: FreeformTags | None = None
    defined_tags: DefinedTags | None = None

    @model_validator(mode="after")
    def _tag_limits(self) -> Tagged:
        freeform = self.freeform_tags or {}
        defined = self.defined_tags or {}
        count = len(freeform) + sum(len(keys) for keys in defined.values())
        if count > limits.MAX_TAGS:
            raise InvalidParameter(
                f"{'definedTags' if defined else 'freeformTags'}: a resource may have at most "
                f"{limits.MAX_TAGS} tags (free-form and defined together); {count} given."
            )
        size = len(json.dumps([freeform, defined], ensure_ascii=False).encode())
        if size > limits.MAX_TAG_BYTES:
            raise InvalidParameter(
                f"{'definedTags' if defined else 'freeformTags'}: the tags of a resource may "
                f"take at most {limits.MAX_TAG_BYTES} bytes of JSON; {size} given."
            )
        return self


def _vpus(value: int | None) -> int | None:
    if value is not None and (
        (value not in (0, 10, 20) and not (30 <= value <= 120)) or value % 10
    ):
        raise ValueError("must be 0, 10, 20 or a multiple of 10 from 30 to 120")
    return value


# A field validator (not a model validator) so that errors are located at ``vpusPerGB``.
VpusPerGB = Annotated[int | None, AfterValidator(_vpus)]


class AutotunePolicy(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", alias_generator=to_camel)
    autotune_type: Literal["DETACHED_VOLUME", "PERFORMANCE_BASED"]
    max_vpus_per_gb: int | None = Field(default=None, alias="maxVpusPerGB", ge=10, le=120)

    @model_validator(mode="after")
    def _needs_max(self) -> AutotunePolicy:
        if self.autotune_type == "PERFORMANCE_BASED" and self.max_vpus_per_gb is None:
            raise ValueError("maxVpusPerGB is required for PERFORMANCE_BASED")
        return self


def require_for_type(model: BaseModel, *names: str) -> None:
    """A field the discriminator ``type`` makes required: 400 MissingParameter naming it
    (``validate`` appends ``ctx["field"]`` to the error's location)."""
    for name in names:
        if getattr(model, name) is None:
            raise PydanticCustomError(
                "missing", "{field} is required for this type", {"field": name}
            )


class VolumeSource(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    type: Literal["volume", "volumeBackup", "volumeBackupDelta", "blockVolumeReplica"]
    id: Ocid | None = None
    firstBackupId: Ocid | None = None
    secondBackupId: Ocid | None = None

    @model_validator(mode="after")
    def _has_fields(self) -> VolumeSource:
        if self.type == "volumeBackupDelta":
            require_for_type(self, "firstBackupId", "secondBackupId")
        else:
            require_for_type(self, "id")
        return self


class CreateVolumeDetails(Tagged):
    compartment_id: Ocid
    availability_domain: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    display_name: DisplayName | None = None
    size_in_gbs: int | None = Field(
        default=None, alias="sizeInGBs", ge=limits.MIN_VOLUME_GBS, le=limits.MAX_VOLUME_GBS
    )
    size_in_mbs: int | None = Field(
        default=None,
        alias="sizeInMBs",
        ge=limits.MIN_VOLUME_GBS * 1024,
        le=limits.MAX_VOLUME_GBS * 1024,
        multiple_of=1024,
    )
    vpus_per_gb: VpusPerGB = Field(default=None, alias="vpusPerGB")
    is_auto_tune_enabled: bool | None = None
    autotune_policies: list[AutotunePolicy] | None = None
    is_reservations_enabled: bool | None = None
    source_details: VolumeSource | None = None
    volume_backup_id: Ocid | None = None
    backup_policy_id: Ocid | None = None

    @model_validator(mode="after")
    def _check(self) -> CreateVolumeDetails:
        if self.size_in_gbs is not None and self.size_in_mbs is not None:
            raise ValueError("give sizeInGBs or sizeInMBs, not both")
        return self


class UpdateVolumeDetails(Tagged):
    display_name: DisplayName | None = None
    vpus_per_gb: VpusPerGB = Field(default=None, alias="vpusPerGB")
    size_in_gbs: int | None = Field(
        default=None, alias="sizeInGBs", ge=limits.MIN_VOLUME_GBS, le=limits.MAX_VOLUME_GBS
    )
    is_auto_tune_enabled: bool | None = None
    autotune_policies: list[AutotunePolicy] | None = None
    is_reservations_enabled: bool | None = None


class VolumeGroupSource(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    type: Literal["volumeIds", "volumeGroupId", "volumeGroupBackupId", "volumeGroupReplicaId"]
    volumeIds: list[Ocid] | None = Field(default=None, max_length=64)
    volumeGroupId: Ocid | None = None
    volumeGroupBackupId: Ocid | None = None
    volumeGroupReplicaId: Ocid | None = None

    @model_validator(mode="after")
    def _has_field(self) -> VolumeGroupSource:
        require_for_type(self, self.type)
        return self


class CreateVolumeGroupDetails(Tagged):
    availability_domain: Annotated[str, Field(min_length=1, max_length=255)]
    compartment_id: Ocid
    source_details: VolumeGroupSource
    display_name: DisplayName | None = None
    backup_policy_id: Ocid | None = None


class UpdateVolumeGroupDetails(Tagged):
    display_name: DisplayName | None = None
    volume_ids: list[Ocid] | None = Field(default=None, max_length=64)


class ChangeCompartmentDetails(Body):
    compartment_id: Ocid


class CreateCompartmentDetails(Tagged):
    compartment_id: Ocid
    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: Annotated[str, Field(min_length=1, max_length=400)]


class UpdateCompartmentDetails(Tagged):
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    description: Annotated[str, Field(min_length=1, max_length=400)] | None = None


UNBUILT = {
    "kmsKeyId": "customer-managed KMS keys are not supported yet",
    "xrcKmsKeyId": "cross-region KMS keys are not supported yet",
    "backupPolicyId": "backup policies are not supported yet",
    "clusterPlacementGroupId": "cluster placement groups are not supported yet",
    "blockVolumeReplicas": "block volume replicas are not supported yet",
    "volumeGroupReplicas": "volume group replicas are not supported yet",
}


def refuse_unbuilt(raw: dict[str, Any], *names: str) -> None:
    """400 naming the first given field of a feature ocibv does not have (never drop it)."""
    for name in names:
        if raw.get(name) not in (None, [], ""):
            raise InvalidParameter(f"{name}: {UNBUILT[name]}; omit this field.")


class RetentionPeriod(BaseModel):
    """1 to ``retention.MAX_DAYS`` DAYS or 1 to ``retention.MAX_YEARS`` YEARS."""

    model_config = ConfigDict(strict=True, extra="ignore", alias_generator=to_camel)
    retention_time_unit: Literal["DAYS", "YEARS"]
    retention_time_amount: int

    @model_validator(mode="after")
    def _in_range(self) -> RetentionPeriod:
        top = retention.MAX_DAYS if self.retention_time_unit == "DAYS" else retention.MAX_YEARS
        if not 1 <= self.retention_time_amount <= top:
            raise InvalidParameter(
                f"retentionPeriod.retentionTimeAmount: must be 1 to {top} "
                f"{self.retention_time_unit}."
            )
        return self


class RetentionFields(Tagged):
    retention_period: RetentionPeriod | None = None
    is_prevent_deletion_enabled: bool | None = None
    is_retention_lock_enabled: bool | None = None
    is_indefinite_retention_enabled: bool | None = None


BackupType = Literal["FULL", "INCREMENTAL"]


class CreateVolumeBackupDetails(RetentionFields):
    volume_id: Ocid
    display_name: DisplayName | None = None
    type: BackupType | None = None


class UpdateVolumeBackupDetails(RetentionFields):
    display_name: DisplayName | None = None


class CreateVolumeGroupBackupDetails(RetentionFields):
    volume_group_id: Ocid
    compartment_id: Ocid | None = None
    display_name: DisplayName | None = None
    type: BackupType | None = None


class UpdateVolumeGroupBackupDetails(RetentionFields):
    display_name: DisplayName | None = None
