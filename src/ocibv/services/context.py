"""What every service needs: settings, the database, the service clock, and a way to wake the
job workers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ocibv.config import Settings
from ocibv.services.clock import ServiceClock
from ocibv.store.database import Database


@dataclass(frozen=True)
class Caller:
    """The authenticated principal: everything it sees is inside its tenancy."""

    tenancy_id: str
    user_id: str


@dataclass
class ServiceContext:
    settings: Settings
    db: Database
    clock: ServiceClock
    wake_jobs: Callable[[], None] = field(default=lambda: None)
