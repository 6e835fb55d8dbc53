"""A Bloom filter of chunk digests: "certainly not stored" without asking the index.

Most digests a backup looks up are new (a FULL of new data, the changed chunks of an
INCREMENTAL), and each SQLite lookup cost ~80 µs of CPU under four threads (measured: a FULL
of the 4 GiB benchmark image spent ~0.8 s of its ~11 s of CPU on them). A digest the filter
has never seen is certainly not in the index; one it has seen is asked of the index as
before, so a false positive (~1% at most) costs only the lookup it would have cost anyway.

Digests are BLAKE3 output, uniformly random: the probe positions are slices of the digest
itself, no hashing.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

PROBES = 7
_POSITIONS = struct.Struct(f"<{PROBES}I")
BITS_PER_DIGEST = 10
"""At most this few bits per digest before the filter asks to be rebuilt bigger (with 20-40,
a power of two): 7 probes give ~0.8% false positives at 10 bits, ~0.02% at 20."""
MIN_BITS = 1 << 16
MAX_BITS = 1 << 32  # the probes are 32-bit slices of the digest


class DigestFilter:
    """Digests (binary) added so far; never forgets one (a removed digest stays a false
    positive until the filter is rebuilt). Not thread-safe for adds: the owner locks."""

    def __init__(self, expected: int = 0) -> None:
        bits = MIN_BITS
        while bits < 2 * BITS_PER_DIGEST * expected and bits < MAX_BITS:
            bits *= 2
        self._bits = bytearray(bits // 8)
        self._mask = bits - 1
        self.capacity = bits // BITS_PER_DIGEST
        self.count = 0

    def _positions(self, digest: bytes) -> tuple[int, ...]:
        if len(digest) < _POSITIONS.size:  # not a digest; padded so it can still be asked
            digest = digest.ljust(_POSITIONS.size, b"\0")
        return _POSITIONS.unpack_from(digest)

    def add(self, digest: bytes) -> None:
        bits, mask = self._bits, self._mask
        for position in self._positions(digest):
            position &= mask
            bits[position >> 3] |= 1 << (position & 7)
        self.count += 1

    def add_many(self, digests: Sequence[bytes]) -> None:
        """:meth:`add` of each of ``digests``: the bits of 32-byte digests are set by numpy,
        at ~0.1 µs a digest instead of ~4 µs (loading the index of a store of a million
        chunks spent seconds here)."""
        if any(len(digest) != 32 for digest in digests):
            for digest in digests:
                self.add(digest)
            return
        words = np.frombuffer(b"".join(digests), dtype="<u4").reshape(-1, 8)
        positions = words[:, :PROBES] & np.uint32(self._mask)
        bits = np.frombuffer(self._bits, dtype=np.uint8)  # a view: writes land in _bits
        np.bitwise_or.at(bits, positions >> 3, np.left_shift(1, positions & 7).astype(np.uint8))
        self.count += len(digests)

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, bytes):
            return False
        bits, mask = self._bits, self._mask
        for position in self._positions(digest):
            position &= mask
            if not bits[position >> 3] & (1 << (position & 7)):
                return False
        return True

    @property
    def full(self) -> bool:
        """Past ``BITS_PER_DIGEST`` bits per digest: rebuild it bigger."""
        return self.count > self.capacity and len(self._bits) * 8 < MAX_BITS
