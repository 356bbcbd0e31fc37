"""What the engine asks of one server: the ServerLink protocol and the data it hands back.

LibvirtLink (virt.connection) is the implementation over a libvirt connection. Every
method blocks and runs on a worker thread; the engine gives each server a worker of its
own and a deadline per call. The protocol is all the engine's runners know of a server, so
a wrapper around a real link can make any one call fail, hang or drop the connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from xencenter_lite.core.domxml import VolumeLayout
from xencenter_lite.core.metadata import VmMetadata
from xencenter_lite.core.model import SR, VM, VirtualNetwork, VmState
from xencenter_lite.core.perf import Counters


class VirtError(Exception):
    """A libvirt failure, with libvirt's error code and its raw message."""

    def __init__(self, message: str, code: int | None = None, cut: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.raw = message
        # The call's own connection was found dead once it failed: it was cut off, not
        # answered (what the server made of it is not known).
        self.cut = cut


class CopyCancelled(Exception):
    """A disk copy was stopped before the VM switched to the copy."""


@dataclass(frozen=True)
class HostIdentity:
    """What libvirt says the host is: the UUID in its capabilities, and its hostname."""

    uuid: str
    hostname: str


@dataclass(frozen=True)
class ServerReading:
    """What one server holds, read in one go."""

    hostname: str
    host_memory: int
    free_memory: int
    vms: tuple[VM, ...]
    srs: tuple[SR, ...]
    networks: tuple[VirtualNetwork, ...] | None = ()  # None: no network driver to ask
    bridges: frozenset[str] = frozenset()  # seen in use: by its networks or running NICs


class Removal(Enum):
    REMOVED = "removed"
    GONE = "gone"  # libvirt says there is no such volume (after refreshing its pools)
    IN_USE = "in use"  # a domain on the server refers to it: left alone


@dataclass(frozen=True)
class DiskFiles:
    """The file disk `dev` of a VM uses, in the running VM and in its persistent
    definition (None: not running / not persistent / no such disk)."""

    live: str | None
    persistent: str | None


@dataclass(frozen=True)
class MigrationSpec:
    uuid: str
    dest_uri: str
    address: str  # the destination's address on the chosen network
    dest_xml: str
    persist_xml: str
    migrate_disks: tuple[str, ...] = ()  # devs to copy; empty = memory only
    keep_shared_disks: bool = False  # some disks stay on storage proven shared
    bandwidth_mib_s: int | None = None
    tls: bool = False
    # Migration policy (see core.policy): vCPU throttling (initial %, increment %), post-copy
    # enabled (switched to later by start_post_copy), xbzrle compression, connections.
    auto_converge: tuple[int, int] | None = None
    post_copy: bool = False
    compression: bool = False
    parallel: int | None = None
    # A halted VM: libvirt moves only its definition (persist_xml, its disks already in
    # place on the destination), defining it there and undefining it here in one call.
    offline: bool = False
    # A transient VM stays transient: defined nowhere, running on the destination only.
    persistent: bool = True


@dataclass(frozen=True)
class VolumeDigest:
    """What one read of a volume's contents gave (see core.digest)."""

    length: int  # bytes, holes included
    data_bytes: int  # of which sent as data
    digest: str


class ServerLink(Protocol):
    """One server, as the engine sees it. Blocking: call from a worker thread."""

    name: str
    uri: str

    # ---- connection ---------------------------------------------------------------------
    def open(self) -> HostIdentity: ...
    def close(self) -> None: ...
    @property
    def alive(self) -> bool: ...
    def watch(self, on_change: Callable[[], None], on_close: Callable[[], None]) -> None: ...

    # ---- reading ------------------------------------------------------------------------
    def read(self) -> ServerReading: ...
    def locate(self, uuid: str) -> VmState | None: ...
    def job_stats(self, uuid: str) -> dict[str, int]: ...
    def disk_files(self, uuid: str, dev: str) -> DiskFiles: ...
    def migratable_xml(self, uuid: str, inactive: bool = False) -> str: ...
    def counters(self, uuid: str | None) -> Counters:
        """The performance counters of a running VM (by UUID), or of the server (None)."""
        ...

    # ---- storage ------------------------------------------------------------------------
    def volume_names(self, sr: str) -> frozenset[str]: ...
    def create_volume(self, sr: str, name: str, capacity: int, fmt: str,
                      layout: VolumeLayout | None = None) -> str: ...
    def compare_cpu(self, cpu: str, virt_type: str, arch: str) -> str | None:
        """None when this server can run a guest with this <cpu> definition, else why not."""
        ...
    def volume_layout(self, path: str) -> VolumeLayout:
        """The image layout (qcow2 compat level, cluster size) of the volume at `path`."""
        ...
    def volume_capacity(self, sr: str, name: str) -> int | None: ...
    def volume_path(self, sr: str, name: str) -> str | None: ...
    def volume_in_use(self, path: str) -> bool: ...
    def volume_backing(self, path: str) -> str | None:
        """The backing file of the volume at `path` (None: it has none)."""
        ...
    def remove_volume(self, path: str) -> Removal: ...
    def remove_volume_named(self, sr: str, name: str) -> Removal: ...

    # ---- domains ------------------------------------------------------------------------
    def set_metadata(self, uuid: str, meta: VmMetadata) -> None: ...
    def define(self, xml: str) -> str:
        """Define a new (persistent, halted) domain; returns its UUID."""
        ...

    def power(self, uuid: str, action: str) -> None:
        """One power operation on the VM: "start", "shutdown" (the guest is asked, by
        ACPI), "destroy" (forced off), "reboot" (asked), "suspend" (paused), "resume",
        "start-paused" (started with its CPUs stopped: no guest code runs; a VM with a saved
        state is restored from it, paused)."""
        ...
    def set_balloon(self, uuid: str, size: int) -> None: ...
    def balloon_actual(self, uuid: str) -> int: ...
    def abort_job(self, uuid: str) -> None: ...
    def set_max_downtime(self, uuid: str, ms: int) -> None: ...
    def start_post_copy(self, uuid: str) -> None: ...
    def resume_if_paused(self, uuid: str) -> None: ...
    def halt_if_paused(self, uuid: str) -> bool:
        """Turn the VM off if it is paused (its definition stays). True if it was."""
        ...
    def save_if_paused(self, uuid: str) -> bool:
        """Managed-save the VM if it is paused (Start then resumes it, running). True if it
        was."""
        ...
    def remove_incoming(self, uuid: str) -> bool: ...
    def persist_disk(self, uuid: str, dev: str, path: str, fmt: str) -> None: ...

    # ---- long operations (each on a connection of its own) -------------------------------
    def migrate(self, spec: MigrationSpec) -> None: ...
    def completed_downtime(self, uuid: str) -> int | None: ...
    def block_copy(self, uuid: str, dev: str, dest_path: str, fmt: str,
                   progress: Callable[[int, int], None], cancel: threading.Event,
                   bandwidth_mib_s: int | None = None) -> None: ...
    def send_volume(self, path: str, dest_uri: str, dest_path: str,
                    progress: Callable[[int, int], None], cancel: threading.Event
                    ) -> VolumeDigest:
        """Copy the volume at `path` here into the existing volume `dest_path` of the server
        at `dest_uri`, through libvirt's sparse volume streams (holes are not sent).
        Raises CopyCancelled once `cancel` is set."""
        ...
    def volume_digest(self, path: str, progress: Callable[[int, int], None],
                      cancel: threading.Event) -> VolumeDigest: ...
