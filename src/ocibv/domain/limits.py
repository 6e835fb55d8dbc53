"""Documented limits (spec §8)."""

from typing import Final

GIB: Final = 1024**3
MIN_VOLUME_GBS: Final = 50
MAX_VOLUME_GBS: Final = 32 * 1024
DEFAULT_VOLUME_GBS: Final = 1024
MAX_VOLUMES_PER_GROUP: Final = 32
MAX_GROUP_GBS: Final = 128 * 1024
MAX_DISPLAY_NAME: Final = 255
MAX_RETRY_TOKEN: Final = 64
RETRY_TOKEN_TTL_SECONDS: Final = 24 * 3600
MAX_PAGE_TOKEN: Final = 4096
MAX_LIMIT: Final = 100
DEFAULT_LIMIT: Final = 100
MAX_BODY_BYTES: Final = 1024 * 1024
CLOCK_SKEW_SECONDS: Final = 300
# OCI tag limits (docs/design.md, "Choices"): per resource, free-form and defined together.
MAX_TAGS: Final = 64
MAX_TAG_BYTES: Final = 5 * 1024
MAX_TAG_KEY: Final = 100
MAX_TAG_VALUE: Final = 256
# Request line plus headers, checked before they are parsed (api/protocol.py).
MAX_HEADER_BYTES: Final = 32 * 1024
