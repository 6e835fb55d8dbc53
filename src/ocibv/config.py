"""Settings: embedded defaults, overridable by command-line options and ``OCIBV_*`` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = ".ocibv"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10800
DEFAULT_REGION = "us-phoenix-1"
REGION_KEYS = {"us-phoenix-1": "phx", "us-ashburn-1": "iad", "eu-frankfurt-1": "fra"}


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass
class Settings:
    """Everything a running ocibv needs to know; all state lives under ``data_dir``."""

    data_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    region: str = DEFAULT_REGION
    availability_domains: list[str] = field(default_factory=lambda: ["Uocm:PHX-AD-1"])
    tombstone_seconds: float = field(
        default_factory=lambda: _env_float("OCIBV_TOMBSTONE_SECONDS", 24 * 3600)
    )
    # Test knob: every job sleeps this long before it works (makes mid-transition crashes testable).
    job_delay_seconds: float = field(
        default_factory=lambda: _env_float("OCIBV_JOB_DELAY_SECONDS", 0.0)
    )
    # Test hook: jobs pause at the step named in ``<data_dir>/pause-at`` (``jobs.context``),
    # so a test can kill -9 the process at exactly that moment.
    test_hooks: bool = field(default_factory=lambda: os.environ.get("OCIBV_TEST_HOOKS") == "1")
    gc_interval_seconds: float = field(
        default_factory=lambda: _env_float("OCIBV_GC_INTERVAL_SECONDS", 3600.0)
    )
    gc_grace_seconds: float = field(
        default_factory=lambda: _env_float("OCIBV_GC_GRACE_SECONDS", 3600.0)
    )
    # How often ``serve`` looks for due scheduled backups and expired ones.
    scheduler_interval_seconds: float = field(
        default_factory=lambda: _env_float("OCIBV_SCHEDULER_INTERVAL_SECONDS", 1.0)
    )
    workers: int = 2
    # backups run in helper processes (engine/backup_process.py); 0: on threads of this one
    backup_process: bool = field(
        default_factory=lambda: os.environ.get("OCIBV_BACKUP_PROCESS", "1") != "0"
    )
    # ``--store-url``; else OCIBV_STORE_URL; else the data dir's ``store/`` directory.
    store_url_option: str | None = None
    # an explicit catalog URL (in-process servers); else OCIBV_DATABASE_URL; else SQLite
    database_url_option: str | None = None

    @property
    def region_key(self) -> str:
        return REGION_KEYS.get(self.region, self.region.split("-")[1][:3])

    @property
    def database_url(self) -> str:
        return (
            self.database_url_option
            or os.environ.get("OCIBV_DATABASE_URL")
            or f"sqlite:///{self.data_dir / 'ocibv.db'}"
        )

    @property
    def volumes_dir(self) -> Path:
        return self.data_dir / "volumes"

    @property
    def store_url(self) -> str:
        """The backup store: ``file:///abs/dir`` or ``s3://bucket/prefix[?endpoint=…]``."""
        return (
            self.store_url_option
            or os.environ.get("OCIBV_STORE_URL")
            or f"file://{(self.data_dir / 'store').resolve()}"
        )

    @property
    def oci_config_path(self) -> Path:
        return self.data_dir / "oci" / "config"

    def volume_path(self, volume_id: str) -> Path:
        """Image file of a volume. ``volume_id`` must be an OCID the service generated."""
        return self.volumes_dir / f"{volume_id}.img"

    @classmethod
    def load(cls, data_dir: str | os.PathLike[str] | None = None, **overrides: object) -> Settings:
        chosen = data_dir or os.environ.get("OCIBV_DATA_DIR") or DEFAULT_DATA_DIR
        settings = cls(data_dir=Path(chosen).resolve())
        ads = os.environ.get("OCIBV_AVAILABILITY_DOMAINS")
        if ads:
            settings.availability_domains = [a.strip() for a in ads.split(",") if a.strip()]
        for key, value in overrides.items():
            if value is not None:
                setattr(settings, key, value)
        return settings
