"""One Qt application and one qasync event loop for the whole test session.

libvirt's event implementation (libvirtaio) can be registered once per process, so the
engine tests and the console tests share this loop.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")

import pytest


@pytest.fixture(scope="session")
def loop(qapp: object) -> Iterator[asyncio.AbstractEventLoop]:
    import qasync

    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    yield loop
    gc.collect()  # free libvirt connections while their event handles can still be removed
    loop.run_until_complete(asyncio.sleep(0.1))
    asyncio.set_event_loop(None)
