"""Operations of Oracle's Block Volume contract that ocibv does not provide yet.

Each answers, after authentication, 501 ``MethodNotImplemented`` naming the operation — never
a bare 404, which clients read as "no such resource". Together with the routes of the
resource modules this covers all 60 operations of the contract
(``shared/spec/oracle-blockstorage-contract.yaml``); the README lists the ones built.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from ocibv.api.call import Call
from ocibv.api.endpoint import ApiContext
from ocibv.domain.errors import MethodNotImplemented

_REPLICAS = "block volume, boot volume and volume group replicas"
_BOOT_VOLUMES = "boot volumes"
_BOOT_BACKUPS = "boot volume backups"
_KMS = "customer-managed KMS keys"
_COPIES = "cross-region backup copies"

# (operationId, method, path, feature)
NOT_BUILT: list[tuple[str, str, str, str]] = [
    ("ListBlockVolumeReplicas", "GET", "/blockVolumeReplicas", _REPLICAS),
    ("GetBlockVolumeReplica", "GET", "/blockVolumeReplicas/{id}", _REPLICAS),
    ("ListBootVolumeReplicas", "GET", "/bootVolumeReplicas", _REPLICAS),
    ("GetBootVolumeReplica", "GET", "/bootVolumeReplicas/{id}", _REPLICAS),
    ("ListVolumeGroupReplicas", "GET", "/volumeGroupReplicas", _REPLICAS),
    ("GetVolumeGroupReplica", "GET", "/volumeGroupReplicas/{id}", _REPLICAS),
    ("ListBootVolumes", "GET", "/bootVolumes", _BOOT_VOLUMES),
    ("CreateBootVolume", "POST", "/bootVolumes", _BOOT_VOLUMES),
    ("GetBootVolume", "GET", "/bootVolumes/{id}", _BOOT_VOLUMES),
    ("UpdateBootVolume", "PUT", "/bootVolumes/{id}", _BOOT_VOLUMES),
    ("DeleteBootVolume", "DELETE", "/bootVolumes/{id}", _BOOT_VOLUMES),
    (
        "ChangeBootVolumeCompartment",
        "POST",
        "/bootVolumes/{id}/actions/changeCompartment",
        _BOOT_VOLUMES,
    ),
    ("GetBootVolumeKmsKey", "GET", "/bootVolumes/{id}/kmsKey", _KMS),
    ("UpdateBootVolumeKmsKey", "PUT", "/bootVolumes/{id}/kmsKey", _KMS),
    ("DeleteBootVolumeKmsKey", "DELETE", "/bootVolumes/{id}/kmsKey", _KMS),
    ("ListBootVolumeBackups", "GET", "/bootVolumeBackups", _BOOT_BACKUPS),
    ("CreateBootVolumeBackup", "POST", "/bootVolumeBackups", _BOOT_BACKUPS),
    ("GetBootVolumeBackup", "GET", "/bootVolumeBackups/{id}", _BOOT_BACKUPS),
    ("UpdateBootVolumeBackup", "PUT", "/bootVolumeBackups/{id}", _BOOT_BACKUPS),
    ("DeleteBootVolumeBackup", "DELETE", "/bootVolumeBackups/{id}", _BOOT_BACKUPS),
    (
        "ChangeBootVolumeBackupCompartment",
        "POST",
        "/bootVolumeBackups/{id}/actions/changeCompartment",
        _BOOT_BACKUPS,
    ),
    ("CopyBootVolumeBackup", "POST", "/bootVolumeBackups/{id}/actions/copy", _COPIES),
    ("GetVolumeKmsKey", "GET", "/volumes/{id}/kmsKey", _KMS),
    ("UpdateVolumeKmsKey", "PUT", "/volumes/{id}/kmsKey", _KMS),
    ("DeleteVolumeKmsKey", "DELETE", "/volumes/{id}/kmsKey", _KMS),
    ("CopyVolumeBackup", "POST", "/volumeBackups/{id}/actions/copy", _COPIES),
    ("CopyVolumeGroupBackup", "POST", "/volumeGroupBackups/{id}/actions/copy", _COPIES),
]


def routes(api: ApiContext) -> list[Route]:
    """One authenticated 501 route per operation of ``NOT_BUILT``."""

    def route(operation: str, method: str, path: str, feature: str) -> Route:
        def refuse(call: Call) -> Response:
            raise MethodNotImplemented(
                f"{operation} is not provided by ocibv yet ({feature} are not built)."
            )

        return Route(path, api.endpoint(refuse), methods=[method])

    return [route(*row) for row in NOT_BUILT]
