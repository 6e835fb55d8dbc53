"""A backup helper leaves one CPU to the foreground while clients make requests
(``engine.cpu_share``): every thread of the helper, then every CPU again once they are quiet."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ocibv.engine.cpu_share import CHECK_SECONDS, QUIET_SECONDS, CpuShare

ALL = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
pytestmark = pytest.mark.skipif(len(ALL) < 2, reason="needs two CPUs to leave one free")

_THREADS = """
import threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def threaded() -> Iterator[subprocess.Popen[str]]:
    """A process with four threads."""
    proc = subprocess.Popen([sys.executable, "-c", _THREADS], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    yield proc
    proc.kill()
    proc.wait()


def affinities(pid: int) -> list[set[int]]:
    return [os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


def test_yields_one_cpu_while_requests_come_and_takes_it_back_when_quiet(
    threaded: subprocess.Popen[str],
) -> None:
    requests, now = [10], [100.0]
    share = CpuShare(threaded.pid, lambda: requests[0], clock=lambda: now[0])
    spare = ALL - {min(ALL)}

    share.check()  # no request since the backup began: every CPU
    assert not share.yielding and affinities(threaded.pid) == [ALL] * 4

    requests[0] += 1
    now[0] += CHECK_SECONDS / 2
    share.check()  # looked too recently: not yet
    assert not share.yielding
    now[0] += 2 * CHECK_SECONDS
    share.check()
    assert share.yielding and affinities(threaded.pid) == [spare] * 4

    now[0] += QUIET_SECONDS / 2
    share.check()  # quiet, but not for long enough
    assert share.yielding and affinities(threaded.pid) == [spare] * 4
    now[0] += QUIET_SECONDS
    share.check()
    assert not share.yielding and affinities(threaded.pid) == [ALL] * 4

    requests[0] += 1
    now[0] += 2 * CHECK_SECONDS
    share.check()
    assert affinities(threaded.pid) == [spare] * 4
    share.release()  # the backup ended
    assert not share.yielding and affinities(threaded.pid) == [ALL] * 4


def test_a_helper_that_exited_is_not_an_error(threaded: subprocess.Popen[str]) -> None:
    requests = [0]
    share = CpuShare(threaded.pid, lambda: requests[0])
    threaded.kill()
    threaded.wait()
    requests[0] += 1
    share.check()
    share.release()
