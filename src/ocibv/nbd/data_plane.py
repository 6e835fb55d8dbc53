"""Attaching volumes in this process: a ``LiveVolume`` per attached image, offered by the NBD
server under an unguessable export name (the ``services.seams.DataPlane`` contract)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from ocibv.engine.live_volume import LiveVolume
from ocibv.nbd.exports import ExportTable
from ocibv.nbd.server import NbdServer


class NbdDataPlane:
    def __init__(self, exports: ExportTable, server: NbdServer) -> None:
        self.exports = exports
        self.server = server
        self.loop: asyncio.AbstractEventLoop | None = None  # set once the server runs
        self._lock = threading.Lock()
        self._attached: dict[str, tuple[str, LiveVolume]] = {}  # volume id -> (export, volume)

    def attach(self, volume_id: str, path: Path, export_name: str, read_only: bool) -> str:
        """Open the image and offer it as ``export_name``; returns the NBD URI."""
        volume = LiveVolume(path, read_only=read_only)
        with self._lock:
            if volume_id in self._attached:
                volume.close()
                raise ValueError(f"volume {volume_id} is already attached")
            self.exports.add(export_name, volume)
            self._attached[volume_id] = (export_name, volume)
        return self.server.uri(export_name)

    def detach(self, volume_id: str) -> bool:
        """Stop offering the volume, end its connections (requests in flight are answered
        first), save its changed-block record and close it; False when not attached here."""
        with self._lock:
            entry = self._attached.pop(volume_id, None)
        if entry is None:
            return False
        export_name, volume = entry
        self.exports.remove(export_name)
        if self.loop is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(
                self.server.disconnect(export_name), self.loop
            ).result(timeout=30)
        volume.close()
        return True

    def live(self, volume_id: str) -> LiveVolume | None:
        """The attached volume's live image, if it is attached in this process."""
        with self._lock:
            entry = self._attached.get(volume_id)
        return entry[1] if entry else None

    def requests_served(self) -> int:
        return self.server.requests_served

    def detach_all(self) -> None:
        with self._lock:
            ids = list(self._attached)
        for volume_id in ids:
            self.detach(volume_id)
