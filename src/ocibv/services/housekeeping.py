"""Store housekeeping: garbage collection, scrub, and recovering the backup catalog from the
store alone after the metadata database is lost."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import AVAILABLE
from ocibv.engine import backup as engine
from ocibv.services.backup_catalog import BackupCatalog, JsonObject
from ocibv.services.backup_runs import BackupRuns
from ocibv.services.context import ServiceContext
from ocibv.store import identity as ids
from ocibv.store import resources as repo

log = logging.getLogger("ocibv.housekeeping")


@dataclass
class ScrubResult:
    chunks_checked: int = 0
    damaged: list[str] = field(default_factory=list)  # chunk digests
    affected: list[tuple[str, str, str]] = field(default_factory=list)  # (id, kind, name)


@dataclass
class RecoverResult:
    tenancies: int = 0
    compartments: int = 0
    backups: int = 0
    skipped: list[str] = field(default_factory=list)


def resource_from_entry(entry: JsonObject) -> repo.Resource:
    """A resource row from a catalog record (fields the row no longer has are ignored, so
    records written by older versions still load)."""
    names = {f.name for f in fields(repo.Resource)}
    return repo.Resource(**{k: v for k, v in entry.items() if k in names})


class StoreHousekeeping:
    def __init__(self, ctx: ServiceContext, catalog: BackupCatalog, runs: BackupRuns) -> None:
        self.ctx = ctx
        self.catalog = catalog
        self.runs = runs

    def collect_garbage(self, grace_seconds: float | None = None) -> dict[str, int]:
        """Sweep chunks no manifest references (older than the grace period), per tenancy."""
        grace = self.ctx.settings.gc_grace_seconds if grace_seconds is None else grace_seconds
        totals = {"tenancies": 0, "deleted_chunks": 0, "freed_bytes": 0}
        for tenancy_id in self.catalog.tenancy_ids():
            store = self.catalog.chunk_store(tenancy_id)
            report = engine.collect_garbage(
                store, self.catalog.live_manifests(tenancy_id), grace_seconds=grace
            )
            totals["tenancies"] += 1
            totals["deleted_chunks"] += report.chunks_deleted
            totals["freed_bytes"] += report.bytes_deleted
        if totals["deleted_chunks"]:
            log.info(
                "gc deleted %d chunk(s), %d bytes", totals["deleted_chunks"], totals["freed_bytes"]
            )
        return totals

    def scrub(self) -> ScrubResult:
        """Re-verify every chunk every backup references; name the backups a damaged chunk
        affects (a group backup is named with its affected members)."""
        result = ScrubResult()
        affected_ids: set[str] = set()
        for tenancy_id in self.catalog.tenancy_ids():
            store = self.catalog.chunk_store(tenancy_id)
            report = engine.scrub(
                store, self.catalog.live_manifests(tenancy_id), workers=self.ctx.settings.workers
            )
            result.chunks_checked += report.chunks_checked
            result.damaged.extend(sorted(report.damaged))
            result.damaged.extend(f"{d} (missing)" for d in sorted(report.missing))
            affected_ids.update(report.affected_backups)
        with self.ctx.db.read() as conn:
            rows = repo.get_many(conn, affected_ids)
            groups = {r.attrs.get("volume_group_backup_id") for r in rows.values()}
            rows.update(repo.get_many(conn, [g for g in groups if g]))
        for backup_id in sorted(affected_ids | {g for g in groups if g}):
            row = rows.get(backup_id)
            name = row.display_name if row else "(not in the catalog)"
            kind = row.kind if row else Kind.VOLUME_BACKUP
            result.affected.append((backup_id, kind, name))
        return result

    def recover(self) -> RecoverResult:
        """Rebuild tenancies, keys, compartments and AVAILABLE backups from the store."""
        result = RecoverResult()
        for tenancy_id in self.catalog.tenancy_ids():
            identity = self.catalog.load_identity(tenancy_id)
            if identity is None:
                result.skipped.append(f"{tenancy_id}: no identity.json in the store")
                continue
            self._recover_identity(tenancy_id, identity, result)
            self._recover_backups(tenancy_id, result)
            self.runs.refresh_unique_sizes(tenancy_id)
        return result

    def _recover_identity(
        self, tenancy_id: str, identity: JsonObject, result: RecoverResult
    ) -> None:
        with self.ctx.db.write() as conn:
            if ids.get_tenancy(conn, tenancy_id) is None:
                tenancy = identity["tenancy"]
                name = tenancy["name"]
                if ids.find_tenancy_by_name(conn, name) is not None:
                    name = f"{name}-recovered-{tenancy_id[-6:]}"
                ids.add_tenancy(conn, tenancy_id, name, tenancy.get("description", ""))
                result.tenancies += 1
            for user in identity["users"]:
                if ids.user_tenancy(conn, user["id"]) is None:
                    ids.add_user(conn, user["id"], tenancy_id, user["name"])
                if ids.find_key(conn, tenancy_id, user["id"], user["fingerprint"]) is None:
                    ids.add_key(conn, user["id"], tenancy_id, user["fingerprint"], user["pem"])
            for comp in identity["compartments"]:
                if repo.get(conn, comp["id"]) is None:
                    repo.insert_exact(conn, resource_from_entry(comp))
                    result.compartments += 1

    def _recover_backups(self, tenancy_id: str, result: RecoverResult) -> None:
        entries = self.catalog.entries(tenancy_id)
        groups = {e["id"]: e for e in entries if e["kind"] == Kind.VOLUME_GROUP_BACKUP}
        with self.ctx.db.write() as conn:
            for entry in entries:
                if repo.get(conn, entry["id"]) is not None:
                    continue
                if not self._restorable(tenancy_id, entry, groups):
                    result.skipped.append(f"{entry['id']}: data incomplete in the store")
                    continue
                entry = dict(entry, lifecycle_state=AVAILABLE, purge_after_us=None)
                repo.insert_exact(conn, resource_from_entry(entry))
                result.backups += 1

    def _restorable(
        self, tenancy_id: str, entry: JsonObject, groups: dict[str, JsonObject]
    ) -> bool:
        if entry["kind"] == Kind.VOLUME_GROUP_BACKUP:
            return all(
                self.catalog.has_manifest(tenancy_id, m)
                for m in entry["attrs"]["volume_backup_ids"]
            )
        group_id = entry["attrs"].get("volume_group_backup_id")
        if group_id and group_id not in groups:
            return False
        return self.catalog.has_manifest(tenancy_id, entry["id"])
