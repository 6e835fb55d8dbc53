"""The job registry: each service registers its job kinds (what runs them, what a failure
does), and the runner looks kinds up here. Adding a job kind touches only its service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ocibv.jobs.context import JobContext
from ocibv.store.jobs import Job

Handler = Callable[[JobContext], None]
FailureHandler = Callable[[Job, BaseException], None]


@dataclass(frozen=True)
class JobKind:
    """How to run one kind of job. ``on_failure`` leaves the job's resource truthful (FAULTY,
    partial data removed); it must be idempotent, as the runner retries it until it succeeds."""

    name: str
    run: Handler
    on_failure: FailureHandler | None = None


class JobRegistry:
    def __init__(self) -> None:
        self._kinds: dict[str, JobKind] = {}

    def register(
        self, name: str, run: Handler, on_failure: FailureHandler | None = None
    ) -> None:
        if name in self._kinds:
            raise ValueError(f"job kind {name!r} is registered twice")
        self._kinds[name] = JobKind(name, run, on_failure)

    def get(self, name: str) -> JobKind | None:
        return self._kinds.get(name)

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self._kinds.values())


class JobSource(Protocol):
    """Anything that registers job kinds (every service with long work)."""

    def register_jobs(self, jobs: JobRegistry) -> None: ...
