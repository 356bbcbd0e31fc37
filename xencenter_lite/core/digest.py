"""A checksum of a disk image's contents that does not depend on how sparse a copy is.

A volume copied through libvirt's sparse streams arrives as data sections and holes; the
copy may keep a run of zeros as a hole, or as written zeros, and two reads of one file may
cut its sections differently. So the image is taken in fixed blocks by offset: a block that
is all zeros (hole or not) counts as nothing, every other block is hashed with its index.
Two images have the same digest exactly when they have the same length and the same bytes
at every offset (SHA-256 collisions aside), and only the allocated data is hashed.
"""

from __future__ import annotations

import hashlib

BLOCK = 1024 * 1024


class BlockDigest:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._block = bytearray()  # the current block's bytes so far
        self._index = 0  # the current block's number
        self.length = 0  # bytes seen so far (data and holes)
        self.data_bytes = 0  # of which data sections (what a sparse copy transfers)

    def _close_block(self) -> None:
        block = bytes(self._block)
        if block.count(0) != len(block):
            self._hash.update(self._index.to_bytes(8, "big"))
            self._hash.update(block)
        self._block.clear()
        self._index += 1

    def data(self, chunk: bytes) -> None:
        self.length += len(chunk)
        self.data_bytes += len(chunk)
        view = memoryview(chunk)
        while view:
            room = BLOCK - len(self._block)
            self._block += view[:room]
            view = view[room:]
            if len(self._block) == BLOCK:
                self._close_block()

    def hole(self, length: int) -> None:
        """`length` bytes of zeros, not transferred."""
        self.length += length
        room = BLOCK - len(self._block)
        if length < room:
            self._block += bytes(length)
            return
        if self._block:
            self._block += bytes(room)
            self._close_block()
            length -= room
        whole, rest = divmod(length, BLOCK)
        self._index += whole  # whole blocks of zeros count as nothing
        self._block += bytes(rest)

    def hexdigest(self) -> str:
        """The digest of everything seen (the last, partial block included)."""
        h = self._hash.copy()
        block = bytes(self._block)
        if block.count(0) != len(block):
            h.update(self._index.to_bytes(8, "big"))
            h.update(block)
        h.update(self.length.to_bytes(8, "big"))
        return h.hexdigest()
