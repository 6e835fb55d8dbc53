"""Store housekeeping: garbage collection, scrub, and recovering the backup catalog from the
store alone after the metadata database is lost."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from ocibv.domain.kinds import Kind
from ocibv.domain.lifecycle import AVAILABLE
from ocibv.engine import backup as engine
from ocibv.engine import keys
from ocibv.engine.backends import child_url, open_backend
from ocibv.engine.backends.base import Backend
from ocibv.engine.errors import ObjectNotFound
from ocibv.engine.migrate import migrate_repository
from ocibv.engine.repository import open_store_root
from ocibv.services.backup_catalog import (
    IDENTITY_SCHEMA,
    RECORD_SCHEMA,
    SCHEMA_VERSION,
    BackupCatalog,
    JsonObject,
    compartment_from_record,
    compartment_record,
    record_from_row,
    row_from_record,
)
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


class StoreHousekeeping:
    def __init__(self, ctx: ServiceContext, catalog: BackupCatalog, runs: BackupRuns) -> None:
        self.ctx = ctx
        self.catalog = catalog
        self.runs = runs

    def collect_garbage(self, grace_seconds: float | None = None) -> dict[str, int]:
        """Sweep chunks no manifest references (older than the grace period), per tenancy."""
        grace = self.ctx.settings.gc_grace_seconds if grace_seconds is None else grace_seconds
        totals = {"tenancies": 0, "deleted_packs": 0, "freed_bytes": 0, "condemned_packs": 0}
        for tenancy_id in self.catalog.tenancy_ids():
            store = self.catalog.chunk_store(tenancy_id)
            report = engine.collect_garbage(store, grace_seconds=grace)
            totals["tenancies"] += 1
            totals["deleted_packs"] += report.packs_deleted
            totals["freed_bytes"] += report.bytes_deleted
            totals["condemned_packs"] += report.packs_condemned
        if totals["deleted_packs"]:
            log.info(
                "gc deleted %d pack(s), %d bytes", totals["deleted_packs"], totals["freed_bytes"]
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
            result.damaged.extend(f"{k} (unreadable index object)" for k in report.damaged_objects)
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
                    repo.insert_exact(conn, compartment_from_record(tenancy_id, comp))
                    result.compartments += 1

    def _recover_backups(self, tenancy_id: str, result: RecoverResult) -> None:
        rows = [row_from_record(e) for e in self.catalog.entries(tenancy_id)]
        groups = {r.id for r in rows if r.kind == Kind.VOLUME_GROUP_BACKUP}
        with self.ctx.db.write() as conn:
            for row in rows:
                if repo.get(conn, row.id) is not None:
                    continue
                if not self._restorable(tenancy_id, row, groups):
                    result.skipped.append(f"{row.id}: data incomplete in the store")
                    continue
                row.lifecycle_state, row.purge_after_us = AVAILABLE, None
                repo.insert_exact(conn, row)
                result.backups += 1

    def _restorable(self, tenancy_id: str, row: repo.Resource, groups: set[str]) -> bool:
        if row.kind == Kind.VOLUME_GROUP_BACKUP:
            return all(self.catalog.has_manifest(tenancy_id, m) for m in row.volume_backup_ids)
        group_id = row.attrs.get("volume_group_backup_id")
        if group_id and group_id not in groups:
            return False
        return self.catalog.has_manifest(tenancy_id, row.id)


@dataclass
class MigrateResult:
    tenancies: int = 0
    chunks_copied: int = 0
    records_rewritten: int = 0
    damaged: list[str] = field(default_factory=list)


def migrate_store(store_url: str) -> MigrateResult:
    """Convert a pre-v1 store to format v1 in place (``ocibv store migrate``); resumable.

    Per tenancy directory: packs and index, catalog records and identity in the v1 schemas,
    the repository config (the commit point), the tenancy marker; the store config last.
    Run it with the server stopped. A v1 store is left as it is.
    """
    root = open_backend(store_url.rstrip("/"))
    result = MigrateResult()
    tenancies = {key.split("/", 1)[0] for key in root.list("") if "/" in key}
    tenancies = {t for t in tenancies if t.startswith("ocid1.tenancy.") and keys.valid_id(t)}
    for tenancy_id in sorted(tenancies):
        backend = open_backend(child_url(store_url.rstrip("/"), tenancy_id))

        def rewrite_records(backend: Backend = backend) -> None:
            result.records_rewritten += _rewrite_records(backend)

        report = migrate_repository(backend, before_commit=rewrite_records)
        result.tenancies += 1
        result.chunks_copied += report.chunks_copied
        result.damaged.extend(report.damaged)
        root.put(keys.tenancy_marker(tenancy_id), tenancy_id.encode())
    root.sync()
    open_store_root(root)
    return result


def _rewrite_records(backend: Backend) -> int:
    """Catalog records (pre-v1: row dumps) and identity.json in the v1 schemas."""
    rewritten = 0
    for key in list(backend.list(keys.CATALOG_PREFIX)):
        entry = json.loads(backend.get(key))
        if entry.get("schema") != RECORD_SCHEMA:
            record = record_from_row(row_from_record(entry))
            backend.put(key, json.dumps(record, sort_keys=True).encode())
            rewritten += 1
    try:
        identity = json.loads(backend.get(keys.IDENTITY))
    except ObjectNotFound:
        return rewritten
    if "schema" not in identity:
        tenancy_id = identity["tenancy"]["id"]
        compartments = [
            compartment_record(compartment_from_record(tenancy_id, c))
            for c in identity.get("compartments") or []
        ]
        doc = {
            **identity,
            "schema": IDENTITY_SCHEMA,
            "version": SCHEMA_VERSION,
            "compartments": compartments,
        }
        backend.put(keys.IDENTITY, json.dumps(doc).encode())
    backend.sync()
    return rewritten
