"""Every ``ocibv`` command failure is one clear line on stderr and a non-zero exit — never a
traceback, whatever fails underneath (a full disk, a broken data directory)."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import create_volume
from tests.e2e.server import OCIBV, Server


def run_ocibv(data_dir: Path, *args: str, file_size_limit: int | None = None
              ) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if file_size_limit is not None:  # what a full disk looks like to the writer
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = dict(os.environ, OCIBV_DATA_DIR=str(data_dir))
    env.pop("OCIBV_DEBUG", None)
    return subprocess.run([OCIBV, *args], env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=limit)


def assert_one_line_failure(proc: subprocess.CompletedProcess[str], *mentions: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ocibv: "), proc.stderr
    assert "Traceback" not in proc.stderr and "[SQL:" not in proc.stderr
    for text in mentions:
        assert text in lines[0], (text, lines[0])


def test_import_on_a_full_disk(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        bs = server.blockstorage()
        tenancy = server.config()["tenancy"]
        ad = server.identity().list_availability_domains(tenancy).data[0].name
        volume = create_volume(bs, tenancy, ad)
        image = tmp_path / "disk.img"
        image.write_bytes(os.urandom(4 << 20))
        # No room to grow any file: the database cannot even take the volume's busy mark.
        proc = run_ocibv(server.data_dir, "volume", "import", volume.id, str(image),
                         file_size_limit=4096)
        assert_one_line_failure(proc, "error: OperationalError")
        # Nothing was half done: the volume still imports once there is room.
        ok = run_ocibv(server.data_dir, "volume", "import", volume.id, str(image))
        assert ok.returncode == 0, ok.stderr
    finally:
        server.stop()


def test_broken_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "ocibv.db").mkdir(parents=True)  # a directory where the database should be
    assert_one_line_failure(run_ocibv(data, "jobs"), "error:")


@pytest.mark.parametrize("args", [("volume", "export", "ocid1.volume.oc1.phx.nope", "x.img")])
def test_oci_errors_print_their_message(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert_one_line_failure(run_ocibv(tmp_path / "data", *args))
