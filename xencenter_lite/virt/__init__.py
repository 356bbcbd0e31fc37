"""The libvirt layer: the only part of xencenter_lite that imports libvirt.

Everything here is blocking and meant to run on a worker thread (the engine does that),
except start_libvirt_events, which runs libvirt's events on a thread of their own.
"""

from xencenter_lite.virt.connection import (
    ServerLink,
    ServerReading,
    VirtError,
    start_libvirt_events,
)

__all__ = ["ServerLink", "ServerReading", "VirtError", "start_libvirt_events"]
