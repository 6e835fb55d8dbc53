"""Migration of a pre-v1 repository (one object per chunk, no config) to format v1, in place.

Steps (docs/design.md, "Migration from the pre-v1 layout"): (1) copy every ``chunks/``
object, verified, into packs with an index — chunks already indexed by an interrupted run
are skipped, so the step can be repeated; (2) the caller's ``before_commit`` (catalog
records, identity); (3) write ``config``: the commit point, after which the repository is
v1; (4) delete the ``chunks/`` objects. A crash anywhere leaves a repository that this
function finishes when run again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from ocibv.engine import keys
from ocibv.engine.backends.base import Backend
from ocibv.engine.chunk_store import ChunkStore
from ocibv.engine.errors import IntegrityError, ObjectNotFound
from ocibv.engine.repository import check_config, new_config


@dataclass
class MigrationReport:
    chunks_copied: int = 0
    chunks_already_packed: int = 0
    damaged: list[str] = field(default_factory=list)  # digests of unreadable chunk objects
    legacy_objects_deleted: int = 0
    already_v1: bool = False


def migrate_repository(
    backend: Backend, *, before_commit: Callable[[], None] | None = None
) -> MigrationReport:
    """Convert the pre-v1 repository on ``backend`` to v1 (idempotent, crash-safe)."""
    report = MigrationReport()
    try:
        check_config(json.loads(backend.get(keys.CONFIG)), backend.url)
        report.already_v1 = True
    except ObjectNotFound:
        config = json.loads(new_config())
        store = ChunkStore(backend, config=config)
        for key in backend.list(keys.LEGACY_CHUNK_PREFIX):
            digest = key.rpartition("/")[2]
            if not keys.is_hex(digest, 64) or key != keys.legacy_chunk_key(digest):
                continue
            if store.has_chunk(digest):
                report.chunks_already_packed += 1
                continue
            try:
                blob = backend.get(key)
                size = len(store.codec.decode(digest, blob))
            except ObjectNotFound:
                continue
            except IntegrityError:
                report.damaged.append(digest)  # left out: scrub names the backups it breaks
                continue
            store.put_blob(digest, blob, size)
            report.chunks_copied += 1
        store.flush()
        if before_commit is not None:
            before_commit()
        backend.put_if_absent(keys.CONFIG, json.dumps(config, indent=1).encode())
        backend.sync()
    for key in list(backend.list(keys.LEGACY_CHUNK_PREFIX)):
        backend.delete(key)
        report.legacy_objects_deleted += 1
    backend.sync()
    return report
