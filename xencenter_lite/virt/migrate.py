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

from xencenter_lite.core.digest import BlockDigest
from xencenter_lite.core.domxml import block_copy_dest_xml
from xencenter_lite.virt.connection import virt_error, virt_errors
from xencenter_lite.virt.link import CopyCancelled, MigrationSpec, VirtError, VolumeDigest


def _tcp(address: str) -> str:
    return f"tcp://[{address}]" if ":" in address else f"tcp://{address}"


def _offline_migrate(source_uri: str, spec: MigrationSpec) -> None:
    # (libvirt's offline migration checks nothing of the disks: they are in place already,
    # copied and verified, and persist_xml names them.)
    flags = (libvirt.VIR_MIGRATE_OFFLINE | libvirt.VIR_MIGRATE_PEER2PEER
             | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    params = {libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: spec.persist_xml,
              libvirt.VIR_MIGRATE_PARAM_DEST_XML: spec.persist_xml}
    with virt_errors():
        conn = libvirt.open(source_uri)
    try:
        with virt_errors():
            conn.lookupByUUIDString(spec.uuid).migrateToURI3(spec.dest_uri, params, flags)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def migrate(source_uri: str, spec: MigrationSpec) -> None:
    """Live-migrate (peer to peer) and make the VM persistent on the destination only (a
    transient VM stays transient); a halted VM (spec.offline): move its definition."""
    if spec.offline:
        _offline_migrate(source_uri, spec)
        return
    flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
    params: dict[str, object] = {
        libvirt.VIR_MIGRATE_PARAM_URI: _tcp(spec.address),
        libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: spec.address,
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: spec.dest_xml,
    }
    if spec.persistent:
        flags |= libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = spec.persist_xml
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
    if spec.auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        initial, increment = spec.auto_converge
        params[libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL] = initial
        params[libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT] = increment
    if spec.post_copy:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
        if spec.bandwidth_mib_s:  # (post-copy has a cap of its own, in bytes/s)
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = (
                int(spec.bandwidth_mib_s) * 1024 * 1024)
    if spec.compression:
        flags |= libvirt.VIR_MIGRATE_COMPRESSED
        params[libvirt.VIR_MIGRATE_PARAM_COMPRESSION] = ["xbzrle"]
    if spec.parallel:
        flags |= libvirt.VIR_MIGRATE_PARALLEL
        params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = int(spec.parallel)
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
        try:
            dom.migrateToURI3(spec.dest_uri, params, flags)
        except libvirt.libvirtError as exc:
            # A source that reports the destination's failure does so on a connection that
            # still works; one cut under the call leaves it unknown what the source does.
            err = virt_error(exc)
            try:
                err.cut = conn.isAlive() != 1
            except libvirt.libvirtError:
                err.cut = True
            raise err from exc
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


CHUNK = 256 * 1024


def _open(uri: str) -> libvirt.virConnect:
    with virt_errors():
        conn = libvirt.open(uri)
    with contextlib.suppress(libvirt.libvirtError):
        conn.setKeepAlive(5, 3)
    return conn


def _physical_size(vol: libvirt.virStorageVol) -> int:
    """The file's size (what a download sends), not the disk's virtual size."""
    with virt_errors():
        return int(vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[1])


def _pump(down: libvirt.virStream, total: int, digest: BlockDigest,
          progress: Callable[[int, int], None], cancel: threading.Event,
          data: Callable[[bytes], None], hole: Callable[[int], None]) -> None:
    """Read a sparse download stream to its end, passing on its data and its holes."""
    while True:
        if cancel.is_set():
            raise CopyCancelled()
        with virt_errors():
            got = down.recvFlags(CHUNK, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE)
        if isinstance(got, int):
            if got != -3:
                raise VirtError(f"the volume stream stopped unexpectedly ({got})")
            with virt_errors():
                length = int(down.recvHole(0))
            digest.hole(length)
            hole(length)
        elif not got:
            return
        else:
            digest.data(got)
            data(got)
        progress(digest.data_bytes, total)


def send_volume(uri: str, path: str, dest_uri: str, dest_path: str,
                progress: Callable[[int, int], None], cancel: threading.Event
                ) -> VolumeDigest:
    """Stream the volume at `path` on `uri` into the volume `dest_path` on `dest_uri`,
    keeping holes holes; returns the digest of what was sent."""
    src, dest = _open(uri), _open(dest_uri)
    down = up = None
    finished = False
    try:
        with virt_errors():
            vol = src.storageVolLookupByPath(path)
            target = dest.storageVolLookupByPath(dest_path)
            total = _physical_size(vol)
            down, up = src.newStream(0), dest.newStream(0)
            vol.download(down, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
            target.upload(up, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
        digest = BlockDigest()
        sink = up

        def data(chunk: bytes) -> None:
            view = memoryview(chunk)
            while view:
                with virt_errors():
                    sent = sink.send(bytes(view))
                if sent < 0:
                    raise VirtError("the destination's volume stream stopped taking data")
                view = view[sent:]

        def hole(length: int) -> None:
            with virt_errors():
                sink.sendHole(length, 0)

        _pump(down, total, digest, progress, cancel, data, hole)
        with virt_errors():
            down.finish()
            up.finish()
        finished = True
        return VolumeDigest(digest.length, digest.data_bytes, digest.hexdigest())
    finally:
        if not finished:
            for stream in (down, up):
                if stream is not None:
                    with contextlib.suppress(libvirt.libvirtError):
                        stream.abort()
        for conn in (src, dest):
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()


def volume_digest(uri: str, path: str, progress: Callable[[int, int], None],
                  cancel: threading.Event) -> VolumeDigest:
    """Read the volume at `path` through a sparse download stream and digest it."""
    conn = _open(uri)
    down = None
    finished = False
    try:
        with virt_errors():
            vol = conn.storageVolLookupByPath(path)
            total = _physical_size(vol)
            down = conn.newStream(0)
            vol.download(down, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
        digest = BlockDigest()
        _pump(down, total, digest, progress, cancel, lambda _c: None, lambda _n: None)
        with virt_errors():
            down.finish()
        finished = True
        return VolumeDigest(digest.length, digest.data_bytes, digest.hexdigest())
    finally:
        if not finished and down is not None:
            with contextlib.suppress(libvirt.libvirtError):
                down.abort()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()
