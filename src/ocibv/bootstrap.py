"""First start: a tenancy with an admin and an API key, and an OCI config file that the
official SDK and CLI accept (``<data-dir>/oci/config``, one profile per tenancy)."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from ocibv.config import Settings
from ocibv.domain.errors import Conflict
from ocibv.services.container import Services
from ocibv.services.identity import NewPrincipal

DEFAULT_PROFILE = "DEFAULT"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def write_profile(settings: Settings, profile: str, principal: NewPrincipal) -> None:
    """Add (or replace) ``[profile]`` in the OCI config file, with its key file beside it."""
    config_path = settings.oci_config_path
    key_path = config_path.parent / f"{profile.lower()}-key.pem"
    # The trailing label is what `oci setup` writes; it silences the CLI's label warning.
    _write_private(key_path, principal.private_key_pem.rstrip(b"\n") + b"\nOCI_API_KEY\n")
    parser = configparser.ConfigParser(default_section="__none__", interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    if config_path.exists():
        parser.read(config_path)
    parser[profile] = {
        "user": principal.user_id,
        "fingerprint": principal.fingerprint,
        "tenancy": principal.tenancy_id,
        "region": settings.region,
        "key_file": str(key_path),
    }
    lines: list[str] = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        lines.extend(f"{k}={v}" for k, v in parser[section].items())
        lines.append("")
    _write_private(config_path, "\n".join(lines).encode())


def ensure_bootstrapped(services: Services) -> NewPrincipal | None:
    """Create the first tenancy in an empty database; None when one exists already (another
    process sharing the database may have just made it)."""
    if services.identity.has_tenancy():
        return None
    try:
        principal = services.identity.create_tenancy("ocibv")
    except Conflict:
        return None
    write_profile(services.settings, DEFAULT_PROFILE, principal)
    return principal


def env_lines(settings: Settings, endpoint: str | None = None) -> list[str]:
    url = endpoint or f"http://{settings.host}:{settings.port}"
    return [
        f"export OCI_CLI_CONFIG_FILE={settings.oci_config_path}",
        f"export OCI_CONFIG_FILE={settings.oci_config_path}",
        f"export OCI_CLI_ENDPOINT={url}",
        "export OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING=True",
        f"export OCIBV_DATA_DIR={settings.data_dir}",
    ]
