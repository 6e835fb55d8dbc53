"""Engine errors: their own family; only the job runner turns them into a FAULTY resource."""


class EngineError(Exception):
    """Base of every engine failure."""


class VolumeImageError(EngineError):
    """A volume image could not be created, resized, read or written."""


class ChunkNotFound(EngineError):
    """A chunk the caller expected is not in the store."""


class IntegrityError(EngineError):
    """Stored data does not match its name (digest) or its manifest."""


class BackendError(EngineError):
    """A storage backend failed (I/O error, permission, full disk...)."""


class ObjectNotFound(BackendError):
    """The backend has no object under the requested key."""


class StoreFormatError(EngineError):
    """The store is of a format or version this code does not read (the message says what
    to run, e.g. ``ocibv store migrate`` for a pre-v1 store)."""
