"""An independent reader of store format v1, written from docs/design.md alone.

``read_backup`` below uses only json, blake3 and zstandard — nothing from ocibv — and
restores a volume from a store ocibv wrote, byte for byte. If this test breaks, either the
format changed (bump its version and say so in the design doc's "Changes") or the document
no longer describes what ocibv writes.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import blake3
import zstandard


def read_backup(root: Path, backup_id: str, target: Path) -> None:
    """Restore ``backup_id`` from the repository directory ``root`` into ``target``."""
    config = json.loads((root / "config").read_bytes())
    if config.get("format") != "ocibv-repository" or config.get("version") != 1:
        raise ValueError("not a repository of format version 1")
    locations: dict[str, tuple[str, int, int, int]] = {}
    for index in sorted((root / "index").glob("*.json")):
        doc = json.loads(index.read_bytes())
        assert doc["version"] == 1
        for pack in doc["packs"]:
            for digest, offset, length, size in pack["chunks"]:
                locations.setdefault(digest, (pack["id"], offset, length, size))
    blob = (root / "manifests" / f"{backup_id}.json").read_bytes()
    head = b'{"checksum":"'
    assert blob.startswith(head) and blob.endswith(b"}")
    checksum = blob[len(head) : len(head) + 64].decode()
    body = blob[90:-1]
    if blake3.blake3(body).hexdigest() != checksum:
        raise ValueError("manifest checksum mismatch")
    manifest = json.loads(body)
    assert manifest["format"] == 1 and manifest["kind"] == "volume_backup"
    dctx = zstandard.ZstdDecompressor()
    with open(target, "wb") as out:
        out.truncate(manifest["volume_size"])
        for index, digest, size, _stored in manifest["chunks"]:
            pack, offset, length, _plain = locations[digest]
            with open(root / "packs" / pack[:2] / pack, "rb") as handle:
                handle.seek(offset)
                stored = handle.read(length)
            assert stored[0] == 1, "blob version"
            if stored[1] == 0:
                data = stored[2:]
            elif stored[1] == 1:
                data = dctx.decompress(stored[2:])
            else:
                raise ValueError("unknown codec")
            if blake3.blake3(data).hexdigest() != digest or len(data) != size:
                raise ValueError(f"chunk {digest} is damaged")
            out.seek(index * manifest["chunk_size"])
            out.write(data)


def check_pack_trailer(path: Path) -> int:
    """Number of blobs a pack's trailer lists (the pack describes itself)."""
    data = path.read_bytes()
    assert data.endswith(b"OCIBVPK1")
    (size,) = struct.unpack("<I", data[-12:-8])
    trailer = json.loads(data[-12 - size : -12])
    assert trailer["version"] == 1
    return len(trailer["chunks"])


def test_independent_reader_restores_exact_bytes(tmp_path: Path) -> None:
    from ocibv.engine.backends import LocalBackend
    from ocibv.engine.backup import backup_volume
    from ocibv.engine.chunk_store import ChunkStore
    from ocibv.engine.manifest import FULL, INCREMENTAL
    from tests.engine.store_helpers import MIB, mixed_image, sha256

    root = tmp_path / "repo"
    store = ChunkStore(LocalBackend(root), pack_size=2 * MIB)
    image = mixed_image(tmp_path / "v.img")
    full = backup_volume(store, image, backup_id="full", volume_id="v", backup_type=FULL)
    with open(image, "r+b") as handle:
        handle.seek(3 * MIB)
        handle.write(os.urandom(300_000))
    backup_volume(store, image, backup_id="incr", volume_id="v", backup_type=INCREMENTAL,
                  previous=full)
    read_backup(root, "incr", tmp_path / "out.img")
    assert sha256(tmp_path / "out.img") == sha256(image)
    packs = list((root / "packs").glob("*/*"))
    assert len(packs) > 1
    assert sum(check_pack_trailer(p) for p in packs) == len(list(store.iter_digests()))
