"""The libvirt layer: the only part of xencenter_lite that imports libvirt.

Everything here is blocking and meant to run on a worker thread (the engine does that),
except event registration, which hooks libvirt's events into the asyncio loop.
"""

from xencenter_lite.virt.connection import (
    ServerLink,
    ServerReading,
    VirtError,
    register_event_loop,
)

__all__ = ["ServerLink", "ServerReading", "VirtError", "register_event_loop"]
