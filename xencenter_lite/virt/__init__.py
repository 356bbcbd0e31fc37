"""The libvirt layer: the only part of xencenter_lite that imports libvirt.

Everything here is blocking and meant to run on a worker thread (the engine does that),
except start_libvirt_events, which runs libvirt's events on a thread of their own.
`link` holds the protocol the engine depends on (ServerLink) and plain data; `connection`
implements it over libvirt.
"""

from xencenter_lite.virt.connection import LibvirtLink, start_libvirt_events
from xencenter_lite.virt.link import (
    CopyCancelled,
    DiskFiles,
    HostIdentity,
    MigrationSpec,
    Removal,
    ServerLink,
    ServerReading,
    VirtError,
    VolumeDigest,
)

__all__ = ["CopyCancelled", "DiskFiles", "HostIdentity", "LibvirtLink", "MigrationSpec",
           "Removal", "ServerLink", "ServerReading", "VirtError", "VolumeDigest",
           "start_libvirt_events"]
