"""A store written by the pre-v1 code (tests/fixtures/store_v0) is refused, then migrated by
``ocibv store migrate`` (resumable), recovered from alone and restored byte for byte."""

from __future__ import annotations

import configparser
import json
import re
import shutil
from pathlib import Path

import oci
import pytest
from cryptography.hazmat.primitives import serialization

from tests.e2e.helpers import sha256_prefix, wait
from tests.e2e.server import Server

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v0"
M = oci.core.models


def _adopt_fixture_user(server: Server, tmp_path: Path, user_id: str, tenancy_id: str) -> str:
    """Register this server's DEFAULT key for the fixture's user; return a profile for it."""
    config = server.config()
    key = serialization.load_pem_private_key(Path(config["key_file"]).read_bytes(), None)
    public = tmp_path / "pub.pem"
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ))
    out = server.ocibv("key", "add", "--user", user_id, str(public)).stdout
    fingerprint = re.search(r"fingerprint (\S+)", out).group(1)  # type: ignore[union-attr]
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(server.config_file)
    parser["fixture"] = {**parser["DEFAULT"], "user": user_id, "fingerprint": fingerprint,
                         "tenancy": tenancy_id}
    with open(server.config_file, "w") as handle:
        parser.write(handle)
    return "fixture"


def test_pre_v1_store_refused_migrated_recovered_restored(
    make_server: type[Server], tmp_path: Path
) -> None:
    expected = json.loads((FIXTURE / "expected.json").read_text())
    server = make_server()
    server.data_dir.mkdir(parents=True)
    shutil.copytree(FIXTURE / "store", server.data_dir / "store")

    refused = server.ocibv("recover", check=False)
    assert refused.returncode != 0 and "ocibv store migrate" in refused.stderr
    with pytest.raises(RuntimeError):
        server.start()

    first = server.ocibv("store", "migrate").stdout
    assert "1 tenancy store(s), 5 chunk(s) packed, 2 catalog record(s)" in first, first
    again = server.ocibv("store", "migrate").stdout  # resumable: a second run is harmless
    assert "0 chunk(s) packed" in again
    assert not list((server.data_dir / "store").rglob("chunks/*/*"))
    assert list((server.data_dir / "store").rglob("packs/*/*"))

    server.start()  # bootstraps its own tenancy on the fresh database
    server.stop()
    out = server.ocibv("recover").stdout
    assert "1 tenancy" in out and "2 backup(s)" in out, out
    server.start()
    identity = json.loads(next((server.data_dir / "store").rglob("identity.json")).read_text())
    assert identity["schema"] == "ocibv-identity"
    profile = _adopt_fixture_user(
        server, tmp_path, identity["users"][0]["id"], expected["tenancy"]
    )
    bs = server.blockstorage(profile)
    ad = oci.identity.IdentityClient(
        server.config(profile), service_endpoint=server.endpoint
    ).list_availability_domains(expected["tenancy"]).data[0].name
    for backup in expected["backups"]:
        got = bs.get_volume_backup(backup["id"]).data
        assert got.lifecycle_state == "AVAILABLE" and got.type == backup["type"]
        created = bs.create_volume(M.CreateVolumeDetails(
            compartment_id=expected["tenancy"], availability_domain=ad,
            source_details=M.VolumeSourceFromVolumeBackupDetails(id=backup["id"]),
        )).data
        wait(bs, bs.get_volume(created.id), "AVAILABLE")
        out_path = tmp_path / "export.img"
        server.ocibv("volume", "export", created.id, str(out_path))
        assert sha256_prefix(out_path, expected["length"]) == backup["sha256"]
        out_path.unlink()
    assert server.ocibv("scrub").returncode == 0
