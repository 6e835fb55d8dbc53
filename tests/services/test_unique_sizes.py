"""The incremental reference table gives the unique sizes a full recount gives."""

from __future__ import annotations

import random

from ocibv.engine.manifest import FULL, ChunkEntry, Manifest
from ocibv.services.backup_catalog import unique_bytes
from ocibv.services.unique_sizes import RefTable


def _manifest(backup_id: str, digests: list[str]) -> Manifest:
    chunks = [ChunkEntry(i, d, 4096, 100 + int(d[:4], 16) % 900) for i, d in enumerate(digests)]
    return Manifest(backup_id, "v", 4096 * max(1, len(digests)), 4096, "t", FULL, chunks)


def test_incremental_table_matches_a_full_recount() -> None:
    rng = random.Random(4)
    pool = [f"{n:064x}" for n in range(40)]
    table = RefTable()
    live: dict[str, Manifest] = {}
    for step in range(300):
        if live and rng.random() < 0.4:
            gone = rng.choice(sorted(live))
            table.remove(gone, live.pop(gone).digests())
        else:
            backup_id = f"b{step}"
            live[backup_id] = _manifest(backup_id, rng.sample(pool, rng.randint(0, 12)))
            table.add(backup_id, {e.digest: e.stored_size for e in live[backup_id].chunks})
        expected = unique_bytes({b: [m] for b, m in live.items()})
        assert table.unique == expected, step
    assert table.take_dirty() and not table.take_dirty()
