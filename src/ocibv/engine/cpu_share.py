"""A backup helper leaves one CPU to the foreground while clients use the attached volumes.

Measured on the 2-core dev VM (``perf sched timehist`` of a group FULL under a QD1 4 KiB NBD
writer): the serving process's NBD thread, woken by a request, waited up to a scheduler tick
(4 ms at HZ=250) on a CPU where a helper thread had just been picked — the kernel's EEVDF
scheduler lets a running task finish its slice (``RUN_TO_PARITY``) whatever its niceness:
the writer's p99 stayed at ~2.2x its figure without a backup with the helper at nice 10
``SCHED_BATCH``, and at ~1.4x with ``SCHED_IDLE``, which slowed the FULL. Keeping the
helper's threads off one CPU brought it to ~0.8x: the woken thread finds that CPU free.
The helper keeps every other CPU, and all of them again once clients have been quiet for
``QUIET_SECONDS`` (a FULL under no foreground load runs at full speed).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

CHECK_SECONDS = 0.05
"""How often (at most) the foreground's request counter is looked at."""
QUIET_SECONDS = 1.0
"""How long clients must have made no request before the helper gets every CPU back."""


def _can_share() -> bool:
    return hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")


class CpuShare:
    """Keeps the threads of process ``pid`` off one CPU while ``foreground()`` — a count of
    the requests clients have made — moves; ``check`` it often, ``release`` it at the end.

    Threads a yielding helper starts inherit its affinity; ``check`` re-applies it to every
    thread while yielding, so one started meanwhile is caught within ``CHECK_SECONDS``.
    With one CPU (or no ``sched_setaffinity``) it never yields."""

    def __init__(
        self,
        pid: int,
        foreground: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pid, self._foreground, self._clock = pid, foreground, clock
        everything = os.sched_getaffinity(0) if _can_share() else set()
        self._all = everything
        self._spare = everything - {min(everything)} if len(everything) > 1 else set()
        self._seen = foreground()  # requests before the backup began do not count
        self._checked = -float("inf")
        self._active_at = -float("inf")
        self.yielding = False

    def check(self) -> None:
        """Yield a CPU if clients made requests since the last look; take it back after
        ``QUIET_SECONDS`` without any."""
        now = self._clock()
        if not self._spare or now - self._checked < CHECK_SECONDS:
            return
        self._checked = now
        seen = self._foreground()
        if seen != self._seen:
            self._seen, self._active_at = seen, now
            self._apply(self._spare)
            self.yielding = True
        elif self.yielding and now - self._active_at >= QUIET_SECONDS:
            self.release()

    def release(self) -> None:
        """Every CPU again (the end of a backup)."""
        if self.yielding:
            self._apply(self._all)
            self.yielding = False

    def _apply(self, cpus: set[int]) -> None:
        with contextlib.suppress(OSError):  # the helper has exited
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with contextlib.suppress(OSError):  # the thread has ended
                    os.sched_setaffinity(int(tid), cpus)
