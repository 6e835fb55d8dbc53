"""Local directory backend: one file per object under a root directory.

Writes follow restic's ``local.Save``: write a temporary file (``.tmp-*``) in the target
directory, fsync it, rename it into place; :meth:`LocalBackend.sync` then fsyncs every
directory changed since the last sync. A file under an object's name therefore always has
its full content on disk, even after a crash (a renamed-but-unsynced file could come back
empty and then be trusted by deduplication), and its name is durable after ``sync()``.
Deferring the data to one ``syncfs`` in ``sync()`` measured the same within noise (see
``docs/design.md``) and flushes every other writer of the file system too, so each object
is fsync'd. Callers get parallelism by calling :meth:`LocalBackend.put` from several threads.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from ocibv.engine.backends.base import Backend, ObjectInfo, validate_key, validate_prefix
from ocibv.engine.errors import BackendError, ObjectNotFound

_TMP_PREFIX = ".tmp-"
_GC_PREFIX = ".gc-"  # left by pre-v1 garbage collection
_IOV_MAX = 1024
_FILE_PIECE = 1 << 20


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, parts: Sequence[bytes | bytearray | memoryview]) -> None:
    """Write every part, in order, with as few system calls as possible (no joining)."""
    views = [memoryview(p) for p in parts if len(p)]
    first = 0
    while first < len(views):
        written = os.writev(fd, views[first : first + _IOV_MAX])
        while written:  # skip what was written; keep the unwritten tail of a part
            if written >= len(views[first]):
                written -= len(views[first])
                first += 1
            else:
                views[first] = views[first][written:]
                written = 0


class LocalBackend(Backend):
    """Objects as files below ``root``; key ``a/b/c`` is the file ``root/a/b/c``. Thread-safe."""

    conditional_put = True
    needs_sync = True

    def __init__(self, root: Path | str) -> None:
        self._root = Path(root).absolute()
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendError(f"cannot create store directory {self._root}: {exc}") from exc
        self._lock = threading.Lock()
        self._dirty_dirs: set[str] = set()
        self._known_dirs: set[str] = {str(self._root)}

    @property
    def root(self) -> Path:
        """The directory holding the objects."""
        return self._root

    @property
    def url(self) -> str:
        return self._root.as_uri()

    def _path(self, key: str) -> str:
        return os.path.join(self._root, validate_key(key))

    def _ensure_dir(self, directory: str) -> None:
        if directory in self._known_dirs:
            return
        missing: list[str] = []
        d = directory
        while d not in self._known_dirs and not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d)
            with self._lock:  # a new directory's entry lives in its parent
                self._dirty_dirs.add(os.path.dirname(d))
        with self._lock:
            self._known_dirs.add(directory)

    def put(self, key: str, data: bytes) -> None:
        self.put_parts(key, (data,))

    def put_parts(self, key: str, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        self._put_from(key, (parts,))

    def _put_from(
        self, key: str, pieces: Iterable[Sequence[bytes | bytearray | memoryview] | bytes]
    ) -> None:
        """Write every piece (a sequence of parts, or bytes) in order to a new object."""
        path = self._path(key)
        directory, name = os.path.split(path)
        tmp = os.path.join(directory, f"{_TMP_PREFIX}{name}-{uuid.uuid4().hex[:12]}")
        try:
            self._ensure_dir(directory)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                for piece in pieces:
                    _write_all(fd, (piece,) if isinstance(piece, bytes) else piece)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise BackendError(f"cannot store {key}: {exc}") from exc
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with self._lock:
            self._dirty_dirs.add(directory)

    def put_file(self, key: str, file: IO[bytes], size: int) -> None:
        file.seek(0)

        def parts() -> Iterator[bytes]:
            left = size
            while left > 0:
                part = file.read(min(left, _FILE_PIECE))
                if not part:
                    raise BackendError(f"cannot store {key}: source ended early")
                left -= len(part)
                yield part

        self._put_from(key, parts())

    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb", buffering=0) as f:
                return f.read()
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key}") from None
        except OSError as exc:
            raise BackendError(f"cannot read {key}: {exc}") from exc

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key}") from None
        except OSError as exc:
            raise BackendError(f"cannot read {key}: {exc}") from exc
        try:
            return os.pread(fd, length, offset)
        except OSError as exc:
            raise BackendError(f"cannot read {key}: {exc}") from exc
        finally:
            os.close(fd)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        directory, name = os.path.split(path)
        tmp = os.path.join(directory, f"{_TMP_PREFIX}{name}-{uuid.uuid4().hex[:12]}")
        try:
            self._ensure_dir(directory)
            with open(tmp, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)  # fails if the key exists: atomic create-if-absent
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise BackendError(f"cannot store {key}: {exc}") from exc
        with self._lock:
            self._dirty_dirs.add(directory)
        return True

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BackendError(f"cannot delete {key}: {exc}") from exc
        with self._lock:
            self._dirty_dirs.add(os.path.dirname(path))

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        # Walk only the directory the prefix points into, then filter by the prefix.
        base_rel = prefix.rpartition("/")[0]
        base = os.path.join(self._root, base_rel) if base_rel else str(self._root)
        yield from self._walk(base, base_rel, prefix)

    def _walk(self, directory: str, rel: str, prefix: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise BackendError(f"cannot list {rel or '/'}: {exc}") from exc
        for entry in entries:
            if entry.name.startswith("."):  # temporaries and GC leftovers, never objects
                continue
            key = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                if key.startswith(prefix) or prefix.startswith(key + "/"):
                    yield from self._walk(entry.path, key, prefix)
            elif key.startswith(prefix):
                yield key

    def stat(self, key: str) -> ObjectInfo:
        try:
            st = os.stat(self._path(key))
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key}") from None
        except OSError as exc:
            raise BackendError(f"cannot stat {key}: {exc}") from exc
        return ObjectInfo(size=st.st_size, mtime=st.st_mtime)

    def sync(self) -> None:
        with self._lock:
            dirs, self._dirty_dirs = self._dirty_dirs, set()
        try:
            for directory in sorted(dirs, key=len, reverse=True):  # children before parents
                with contextlib.suppress(FileNotFoundError):
                    _fsync_dir(directory)
        except OSError as exc:
            with self._lock:
                self._dirty_dirs |= dirs
            raise BackendError(f"cannot sync store {self._root}: {exc}") from exc

    def cleanup(self, cutoff: float) -> int:
        removed = 0
        for dirpath, _dirnames, filenames in os.walk(self._root):
            for name in filenames:
                if not name.startswith((_TMP_PREFIX, _GC_PREFIX)):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    if os.stat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed
