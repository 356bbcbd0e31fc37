"""A domain of libvirt's test driver (test:///default, whose state lives as long as the
process), made for one test and gone after it."""

from __future__ import annotations

import contextlib
import uuid as uuidlib
from collections.abc import Iterator

import libvirt


@contextlib.contextmanager
def driver_domain(prefix: str, *, start: bool = True) -> Iterator[tuple[str, str]]:
    """(tag, UUID) of a 1 MiB domain named `prefix`-`tag` (the test driver says its host
    has 3 MiB free, and Start checks memory); running unless `start` is False."""
    tag = uuidlib.uuid4().hex[:8]
    conn = libvirt.open("test:///default")
    dom = conn.defineXML(f"<domain type='test'><name>{prefix}-{tag}</name>"
                         "<memory>1024</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
                         "</domain>")
    if start:
        dom.create()
    try:
        yield tag, dom.UUIDString()
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        conn.close()
