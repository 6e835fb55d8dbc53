"""The NBD data plane: attached volumes served over the Network Block Device protocol.

Concepts:
- ``protocol``: the wire format (fixed newstyle handshake, options, requests, simple and
  structured replies, error values), per the NetworkBlockDevice project's ``doc/proto.md``.
- ``Export`` / ``Exports`` (``exports``): a named block device and the set the server offers;
  ``ExportTable`` is the attach/detach seam (``add(name, export)`` / ``remove(name)``).
  ``ocibv.engine.live_volume.LiveVolume`` is the export of a volume image.
- ``handshake``: option haggling up to the transmission phase, STARTTLS included.
- ``Transmission`` (``transmission``): the transmission phase of one connection, an asyncio
  buffered protocol; ``requests`` validates requests; ``WriteQueue`` runs a connection's
  writes in order, batched, in the thread pool.
- ``NbdServer`` (``server``): the asyncio listener; owns the thread pool and the server-wide
  in-flight budget; ``disconnect(name)`` ends the connections of a detached export.
"""

from ocibv.nbd.exports import Export, Exports, ExportTable
from ocibv.nbd.server import DEFAULT_HOST, DEFAULT_PORT, NbdServer

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Export", "ExportTable", "Exports", "NbdServer"]
