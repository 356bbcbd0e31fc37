"""The copy digest: the same bytes at the same offsets give the same digest, however the
image is cut into data and holes; any changed byte, or length, gives another."""

from __future__ import annotations

import os
import random

from xencenter_lite.core.digest import BLOCK, BlockDigest


def _digest(parts: list[bytes | int]) -> str:
    d = BlockDigest()
    for p in parts:
        if isinstance(p, int):
            d.hole(p)
        else:
            d.data(p)
    return d.hexdigest()


def _cut(image: bytes, rng: random.Random) -> list[bytes | int]:
    """`image` as a stream would send it: random sections, zero runs sometimes as holes."""
    out: list[bytes | int] = []
    at = 0
    while at < len(image):
        n = min(len(image) - at, rng.choice([1, 511, 4096, BLOCK - 3, BLOCK, 3 * BLOCK + 7]))
        chunk = image[at:at + n]
        out.append(n if chunk.count(0) == n and rng.random() < 0.7 else chunk)
        at += n
    return out


def test_the_digest_does_not_depend_on_how_the_image_is_cut() -> None:
    rng = random.Random(7)
    image = bytearray(9 * BLOCK + 12345)
    for at in (0, BLOCK + 17, 5 * BLOCK - 1, 9 * BLOCK + 100):
        image[at:at + 3000] = os.urandom(3000)
    whole = _digest([bytes(image)])
    for _ in range(20):
        assert _digest(_cut(bytes(image), rng)) == whole


def test_one_changed_byte_or_a_longer_image_changes_it() -> None:
    image = bytearray(3 * BLOCK)
    image[10] = 1
    base = _digest([bytes(image)])
    changed = bytearray(image)
    changed[2 * BLOCK + 5] = 1
    assert _digest([bytes(changed)]) != base
    moved = bytearray(3 * BLOCK)
    moved[11] = 1  # the same byte at another offset
    assert _digest([bytes(moved)]) != base
    assert _digest([bytes(image), 1]) != base  # one more zero byte at the end
    assert _digest([3 * BLOCK]) != base


def test_holes_count_as_zeros_but_are_not_data() -> None:
    d = BlockDigest()
    d.data(b"x" * 10)
    d.hole(5 * BLOCK)
    d.data(b"y")
    assert (d.length, d.data_bytes) == (10 + 5 * BLOCK + 1, 11)
    assert d.hexdigest() == _digest([b"x" * 10 + bytes(5 * BLOCK) + b"y"])
