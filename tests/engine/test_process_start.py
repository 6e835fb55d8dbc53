"""What an engine process costs before it does anything."""

from __future__ import annotations

import os
import subprocess
import sys


def test_importing_the_engine_starts_no_thread() -> None:
    """numpy's OpenBLAS would start a spinning thread per extra CPU (CPU taken from every
    short-lived engine process); ``ocibv`` asks it for none, unless the environment says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS", "OMP_"))}
    code = (
        "import os, ocibv.engine.chunk_table, ocibv.services.unique_sizes;"
        "print(len(os.listdir('/proc/self/task')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert int(out.stdout) == 1
