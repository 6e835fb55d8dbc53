"""``ocibv volume import|export`` against a running server, and the admin commands a newcomer
meets first: ``ocibv env``, ``ocibv tenancy create`` and the bootstrap's config and key."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import oci
import pytest

from tests.e2e.helpers import new_volume
from tests.e2e.server import OCIBV, VENV_BIN, InProcessServer, Server

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
IMAGE_SIZE = 64 * MiB
VOLUME_SIZE = 50 * GiB
# Where the test image below holds nothing: the never-written middle, and the regions written
# with explicit zero bytes. An export must hold no data there.
EMPTY_REGIONS = [(8 * MiB, 40 * MiB), (40 * MiB, 44 * MiB), (48 * MiB, 60 * MiB)]
ZERO_REGIONS = [(40 * MiB, 4 * MiB), (52 * MiB, 4 * MiB)]


def data_extents(path: Path) -> list[tuple[int, int]]:
    """``(start, end)`` of every region of ``path`` that the filesystem says holds data."""
    extents: list[tuple[int, int]] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size, offset = os.fstat(fd).st_size, 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, end))
            offset = end
    finally:
        os.close(fd)
    return extents


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def sha256_prefix(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = length
        while remaining:
            block = f.read(min(remaining, 4 * MiB))
            assert block, f"{path} is shorter than {length} bytes"
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def build_image(path: Path) -> int:
    """A 64 MiB image with random data (aligned and not), a 32 MiB hole in the middle, and
    two 4 MiB regions of explicit zero bytes. Returns the bytes of non-zero data."""
    pieces = [
        (0, os.urandom(MiB)),
        (5 * MiB + 123, os.urandom(300 * KiB)),
        (44 * MiB, os.urandom(2 * MiB)),
        (IMAGE_SIZE - 4 * KiB, os.urandom(4 * KiB)),
    ]
    with open(path, "wb") as f:
        f.truncate(IMAGE_SIZE)
        for offset, data in pieces:
            f.seek(offset)
            f.write(data)
        for offset, length in ZERO_REGIONS:
            f.seek(offset)
            f.write(bytes(length))
    return sum(len(data) for _, data in pieces)


def overlaps(extents: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(a < end and start < b for a, b in extents)


def refused(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one-line message of a refused command (non-zero exit, message on stderr)."""
    assert proc.returncode != 0, f"expected a refusal, got success: {proc.stdout}"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ocibv: ")]
    assert lines, f"no 'ocibv: ' message on stderr: {proc.stderr!r}"
    message = lines[-1]
    for word in words:
        assert word.lower() in message.lower(), message
    assert "Traceback" not in proc.stderr and "Errno" not in message, proc.stderr
    return message


@pytest.fixture(scope="module")
def server(own_server: InProcessServer) -> Server:
    """This module's own server: these tests plant files around its data dir and check
    nothing else was written there."""
    return own_server


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("images") / "disk.img"
    return path, build_image(path)


@pytest.fixture
def volume(bs: oci.core.BlockstorageClient, compartment: str, ad: str) -> str:
    return new_volume(bs, compartment, ad, "imported")


# --- import / export ----------------------------------------------------------------------


def test_import_then_export_round_trips_bytes_and_holes(
    server: Server, volume: str, image: tuple[Path, int], tmp_path: Path
) -> None:
    path, data_size = image
    image_extents = data_extents(path)
    for offset, length in ZERO_REGIONS:  # the explicit zeros really are on disk in the image
        assert overlaps(image_extents, offset, offset + length)

    done = server.ocibv("volume", "import", volume, str(path), spawn=True)  # as a user runs it
    assert volume in done.stdout

    out = tmp_path / "export.img"
    with open(out, "wb") as f:  # an existing file is overwritten, garbage in its holes too
        f.seek(20 * MiB)
        f.write(b"\xff" * MiB)
    server.ocibv("volume", "export", volume, str(out), spawn=True)

    assert out.stat().st_size == VOLUME_SIZE
    assert sha256_prefix(out, IMAGE_SIZE) == sha256_prefix(path, IMAGE_SIZE)
    extents = data_extents(out)
    assert extents, "the export holds no data at all"
    assert all(end <= IMAGE_SIZE for _, end in extents), f"data past the image: {extents}"
    for start, end in EMPTY_REGIONS:
        assert not overlaps(extents, start, end), f"{start}-{end} is not a hole: {extents}"
    # Sparse: about the data, not 64 MiB and certainly not 50 GiB.
    assert data_size <= allocated(out) <= 24 * MiB
    volume_file = server.data_dir / "volumes" / f"{volume}.img"
    assert volume_file.stat().st_size == VOLUME_SIZE
    assert data_size <= allocated(volume_file) <= 24 * MiB


def test_import_replaces_the_whole_volume(
    server: Server, volume: str, image: tuple[Path, int], tmp_path: Path
) -> None:
    server.ocibv("volume", "import", volume, str(image[0]))
    small = tmp_path / "small.img"
    small.write_bytes(os.urandom(MiB))
    server.ocibv("volume", "import", volume, str(small))
    out = tmp_path / "out.img"
    server.ocibv("volume", "export", volume, str(out))
    with open(out, "rb") as f:
        assert f.read(MiB) == small.read_bytes()
    assert all(end <= MiB for _, end in data_extents(out)), "old data survived the import"


def test_image_larger_than_volume_is_refused(
    server: Server,
    bs: oci.core.BlockstorageClient,
    compartment: str,
    ad: str,
    tmp_path: Path,
) -> None:
    volume = new_volume(bs, compartment, ad, "keep")
    keep = tmp_path / "keep.img"
    keep.write_bytes(os.urandom(64 * KiB))
    server.ocibv("volume", "import", volume, str(keep))
    huge = tmp_path / "huge.img"
    with open(huge, "wb") as f:
        f.truncate(51 * GiB)
        f.write(b"boot")

    proc = server.ocibv("volume", "import", volume, str(huge), check=False)
    refused(proc, "larger", volume)

    out = tmp_path / "out.img"  # the volume is untouched and free again
    server.ocibv("volume", "export", volume, str(out))
    with open(out, "rb") as f:
        assert f.read(64 * KiB) == keep.read_bytes()


def _busy_mark(server: Server, volume_id: str) -> str | None:
    """The reason of the volume's reservation, if anything holds it."""
    db = sqlite3.connect(f"file:{server.data_dir / 'ocibv.db'}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute(
            "SELECT reason FROM reservations WHERE resource_id = ?", (volume_id,)
        ).fetchone()
    finally:
        db.close()
    return row[0] if row else None


@pytest.fixture
def held_import(
    server: Server, volume: str, tmp_path: Path
) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """An import of a 256 MiB image, frozen (SIGSTOP) while it holds the volume.

    Yields the image and the importer; it is continued and reaped after the test."""
    big = tmp_path / "big.img"
    block = os.urandom(MiB)
    with open(big, "wb") as f:
        for n in range(256):
            f.write(block[n:] + block[:n])
    proc = subprocess.Popen(
        [OCIBV, "volume", "import", volume, str(big)],
        env=server._env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (_busy_mark(server, volume) or "").startswith("import"):
            assert proc.poll() is None, f"import ended before it was seen busy: {proc.stderr}"
            assert time.monotonic() < deadline, "import never marked the volume busy"
            time.sleep(0.002)
        proc.send_signal(signal.SIGSTOP)
        yield big, proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGCONT)
        proc.communicate(timeout=60)


def test_busy_volume_is_refused_until_the_import_ends(
    server: Server,
    bs: oci.core.BlockstorageClient,
    volume: str,
    held_import: tuple[Path, subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    big, importer = held_import
    out = tmp_path / "out.img"
    refused(server.ocibv("volume", "export", volume, str(out), check=False), "busy")
    assert not out.exists()
    other = tmp_path / "other.img"
    other.write_bytes(b"x" * MiB)
    refused(server.ocibv("volume", "import", volume, str(other), check=False), "busy")
    # The running server sees the mark too: the volume cannot be deleted from under the copy.
    with pytest.raises(oci.exceptions.ServiceError) as err:
        bs.delete_volume(volume)
    assert err.value.status == 409
    assert bs.get_volume(volume).data.lifecycle_state == "AVAILABLE"

    importer.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 60
    while _busy_mark(server, volume) is not None:
        assert time.monotonic() < deadline, "the import never released the volume"
        time.sleep(0.05)
    server.ocibv("volume", "export", volume, str(out))
    size = big.stat().st_size
    assert sha256_prefix(out, size) == sha256_prefix(big, size)


def test_a_killed_import_does_not_wedge_the_volume(
    server: Server,
    volume: str,
    held_import: tuple[Path, subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    _, importer = held_import
    staging = server.data_dir / "volumes" / f"{volume}.img.import"
    importer.kill()
    importer.communicate(timeout=30)
    # The running server finds the importer dead: it releases the volume and removes the
    # staging file by itself, without a restart (the volume's old bytes are kept).
    deadline = time.monotonic() + 15
    while _busy_mark(server, volume) is not None or staging.exists():
        assert time.monotonic() < deadline, "the dead importer's reservation was never released"
        time.sleep(0.05)
    small = tmp_path / "small.img"
    small.write_bytes(os.urandom(64 * KiB))
    server.ocibv("volume", "import", volume, str(small))  # the dead importer's mark is stale
    out = tmp_path / "out.img"
    server.ocibv("volume", "export", volume, str(out))
    with open(out, "rb") as f:
        assert f.read(64 * KiB) == small.read_bytes()
    assert all(end <= 64 * KiB for _, end in data_extents(out))


def _outside_snapshot(server: Server) -> dict[str, tuple[int, int]]:
    """Every file next to the data dir (not in it, not the server log): size and mtime."""
    root = server.data_dir.parent
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root and server.data_dir.name in dirnames:
            dirnames.remove(server.data_dir.name)
        for name in filenames:
            if name.endswith("-serve.log"):
                continue
            st = os.stat(os.path.join(dirpath, name))
            found[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return found


@pytest.mark.parametrize(
    "bad_id",
    # every malformed id is refused in process (tests/services/test_volume_data.py); here
    # two of them show the commands refuse them cleanly and write nothing
    ["../../etc/passwd", "ocid1.volume.oc1.phx.aaaaaaaa/../../../victim"],
)
def test_malformed_volume_id_is_refused_and_touches_nothing_outside(
    server: Server, bad_id: str, tmp_path: Path
) -> None:
    # Files where a path built from the id would land if it were trusted.
    root = server.data_dir.parent
    (root / "etc").mkdir(exist_ok=True)
    for victim in (root / "etc" / "passwd.img", root / "victim.img", root / "victim"):
        victim.write_bytes(b"precious")
    before = _outside_snapshot(server)
    image = tmp_path / "img"
    image.write_bytes(os.urandom(4 * KiB))
    out = tmp_path / "out.img"

    refused(server.ocibv("volume", "import", bad_id, str(image), check=False), "not a volume")
    refused(server.ocibv("volume", "export", bad_id, str(out), check=False), "not a volume")

    assert not out.exists()
    assert _outside_snapshot(server) == before
    assert (root / "etc" / "passwd.img").read_bytes() == b"precious"


def test_unknown_volume_is_refused(server: Server, compartment: str, tmp_path: Path) -> None:
    image = tmp_path / "img"
    image.write_bytes(os.urandom(4 * KiB))
    out = tmp_path / "out.img"
    missing = "ocid1.volume.oc1.phx.aaaaaaaa" + "x" * 52
    refused(server.ocibv("volume", "import", missing, str(image), check=False), "not found")
    refused(server.ocibv("volume", "export", missing, str(out), check=False), "not found")
    # An OCID of another kind is not a volume either.
    refused(server.ocibv("volume", "export", compartment, str(out), check=False), "not a volume")
    assert not out.exists()
    assert not (server.data_dir / "volumes" / f"{missing}.img").exists()


# --- bootstrap, env, tenancy --------------------------------------------------------------


def test_first_start_writes_config_and_key_private(server: Server) -> None:
    assert stat.S_IMODE(server.config_file.stat().st_mode) == 0o600
    key_file = Path(server.config()["key_file"])
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key_file.read_bytes()


def test_env_lines_point_the_cli_at_the_server(server: Server) -> None:
    lines = server.ocibv("env").stdout.splitlines()
    assert f"export OCI_CLI_CONFIG_FILE={server.config_file}" in lines
    assert f"export OCI_CLI_ENDPOINT={server.endpoint}" in lines
    # A shell with nothing but PATH and the data dir: eval the lines, then the oci CLI works.
    clean_env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "OCIBV_DATA_DIR": str(server.data_dir),
    }
    script = 'eval "$(ocibv env)" && oci iam availability-domain list'
    proc = subprocess.run(
        ["bash", "-c", script], env=clean_env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "PHX-AD-1" in proc.stdout


def test_tenancy_create_adds_a_working_profile(
    server: Server, bs: oci.core.BlockstorageClient, volume: str
) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    out = server.ocibv("tenancy", "create", "--name", name).stdout
    assert f"[{name}]" in out
    config = server.config(name)
    assert config["tenancy"] != server.config()["tenancy"]
    assert stat.S_IMODE(Path(config["key_file"]).stat().st_mode) == 0o600
    assert stat.S_IMODE(server.config_file.stat().st_mode) == 0o600

    identity = server.identity(name)
    ads = identity.list_availability_domains(config["tenancy"]).data
    assert ads and ads[0].compartment_id == config["tenancy"]
    other = server.blockstorage(name)
    with pytest.raises(oci.exceptions.ServiceError) as err:  # tenancies do not see each other
        other.get_volume(volume)
    assert err.value.status == 404
    assert other.list_volumes(compartment_id=config["tenancy"]).data == []
    # The DEFAULT profile still works; the same name twice is refused.
    assert bs.get_volume(volume).data.id == volume
    refused(server.ocibv("tenancy", "create", "--name", name, check=False), name)
