"""The blocking halves of a migration and a live disk move, run on worker threads.

Each opens its own connection to the source server and looks the domain up again there,
so the long call never shares a connection with the progress polling or a cancel.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import libvirt

from xencenter_lite.core.domxml import block_copy_dest_xml
from xencenter_lite.virt.connection import virt_error, virt_errors
from xencenter_lite.virt.link import CopyCancelled, MigrationSpec, VirtError


def _tcp(address: str) -> str:
    return f"tcp://[{address}]" if ":" in address else f"tcp://{address}"


def migrate(source_uri: str, spec: MigrationSpec) -> None:
    """Live-migrate (peer to peer) and make the VM persistent on the destination only."""
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
             | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    params: dict[str, object] = {
        libvirt.VIR_MIGRATE_PARAM_URI: _tcp(spec.address),
        libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: spec.address,
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: spec.dest_xml,
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: spec.persist_xml,
    }
    if spec.migrate_disks:
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(spec.migrate_disks)
        params[libvirt.VIR_MIGRATE_PARAM_DISKS_URI] = _tcp(spec.address)
    if spec.keep_shared_disks:
        # Disks left in place are on an SR proven to be the same storage on both servers
        # (a probe volume made through one was seen through the other); libvirt cannot tell
        # a shared directory from a local one, so it must be told. Never for anything else.
        flags |= libvirt.VIR_MIGRATE_UNSAFE
    if spec.bandwidth_mib_s:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(spec.bandwidth_mib_s)
    if spec.tls:
        flags |= libvirt.VIR_MIGRATE_TLS
    with virt_errors():
        conn = libvirt.open(source_uri)
    # Without keepalive a source that stops answering (hung daemon, cut link) would hold
    # this call forever; with it the call fails within about 20 s and the engine settles the
    # job from where the VM turns out to be. Needs an event loop (none: no keepalive).
    with contextlib.suppress(libvirt.libvirtError):
        conn.setKeepAlive(5, 3)
    try:
        with virt_errors():
            dom = conn.lookupByUUIDString(spec.uuid)
            dom.migrateToURI3(spec.dest_uri, params, flags)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def block_copy(
    uri: str,
    uuid: str,
    dev: str,
    dest_path: str,
    fmt: str,
    progress: Callable[[int, int], None],
    cancel: threading.Event,
    bandwidth_mib_s: int | None = None,
    poll: float = 0.3,
) -> None:
    """Mirror disk `dev` onto `dest_path` (an existing volume), then pivot to it.

    Returns once the running VM uses `dest_path`. Raises CopyCancelled when `cancel` is set
    before the pivot (the VM keeps its old disk), VirtError on any failure. A failure of the
    pivot call itself leaves it unknown which file the VM uses: the caller asks the server.
    libvirt 9.0 rewrites the persistent definition on pivot; the caller makes sure of it.
    """
    with virt_errors():
        conn = libvirt.open(uri)
    with contextlib.suppress(libvirt.libvirtError):
        conn.setKeepAlive(5, 3)
    try:
        with virt_errors():
            dom = conn.lookupByUUIDString(uuid)
            params: dict[str, int] = {}
            if bandwidth_mib_s:
                params[libvirt.VIR_DOMAIN_BLOCK_COPY_BANDWIDTH] = bandwidth_mib_s * 1024 * 1024
            dom.blockCopy(dev, block_copy_dest_xml(dest_path, fmt), params,
                          libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT
                          | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
        pivoted = False
        try:
            while True:
                if cancel.is_set():
                    raise CopyCancelled()
                with virt_errors():
                    info = dom.blockJobInfo(dev, 0)
                if not info:
                    raise VirtError(f"the copy job of disk {dev} ended unexpectedly")
                cur, end = int(info.get("cur", 0)), int(info.get("end", 0))
                progress(cur, end)
                if end > 0 and cur == end:
                    try:
                        dom.blockJobAbort(dev, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                        pivoted = True
                        return
                    except libvirt.libvirtError as exc:
                        if "not ready" not in (exc.get_error_message() or ""):
                            raise virt_error(exc) from exc
                time.sleep(poll)
        finally:
            if not pivoted:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.blockJobAbort(dev, 0)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()
