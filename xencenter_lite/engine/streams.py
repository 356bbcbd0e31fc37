"""Copying a halted VM's disks through libvirt's volume streams, shared by a halted VM's
move and Copy VM: each volume made on the destination is written down before it is made,
each disk is streamed into it (holes kept holes), read back and compared, with the job's
progress and Cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from xencenter_lite.core.cleanup import Cleanup
from xencenter_lite.core.domxml import VolumeLayout
from xencenter_lite.core.errors import is_volume_exists
from xencenter_lite.core.jobs import Job, JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.core.plan import free_volume_name
from xencenter_lite.engine.fleet import Fleet
from xencenter_lite.engine.undo import UndoLog
from xencenter_lite.engine.worker import run_long
from xencenter_lite.virt import CopyCancelled, VirtError, VolumeDigest


class Cancelled(Exception):
    """The operator cancelled the job before it changed anything that cannot be undone."""


class MoveFailed(Exception):
    """Something the job itself found wrong (a copy that does not match, a VM started
    meanwhile): its message is for the operator."""


@dataclass(frozen=True)
class NewVolume:
    dev: str
    sr: str
    name: str  # wanted; the first free `name-N` is taken when it is in use
    capacity: int
    format: str
    layout: VolumeLayout | None = None  # the source image's, kept by the copy


async def make_volumes(fleet: Fleet, job: Job, undo: UndoLog, server: str,
                       wanted: list[NewVolume], entry: Callable[[str, str], Cleanup]
                       ) -> dict[str, str]:
    """Create each volume on `server`, each written down first (`entry(sr, name)`);
    returns dev -> path."""
    link = fleet.link(server)
    taken: dict[str, set[str]] = {}
    paths: dict[str, str] = {}
    for v in wanted:
        for _attempt in range(5):
            if v.sr not in taken:
                taken[v.sr] = set(await fleet.call(server, link.volume_names, v.sr))
            name = free_volume_name(v.name, taken[v.sr])
            taken[v.sr].add(name)
            written = undo.record(entry(v.sr, name))
            try:
                path = await fleet.call(server, link.create_volume, v.sr, name, v.capacity,
                                        v.format, v.layout)
            except VirtError as exc:
                if not is_volume_exists(exc.code, exc.raw):
                    raise
                undo.done(written)  # someone else's volume took the name: not ours
                del taken[v.sr]
                continue
            undo.amend(written, path=path)
            paths[v.dev] = path
            job.messages.append(f"Created {path} on '{server}'")
            break
        else:
            raise VirtError(f"could not find a free volume name for disk {v.dev} in SR "
                            f"'{v.sr}' of '{server}'")
    return paths


@dataclass(frozen=True)
class DiskCopy:
    dev: str
    source_path: str
    dest_path: str
    allocated: int  # what is sent: the source's allocated bytes


async def copy_and_verify(fleet: Fleet, job: Job, src: str, dest: str,
                          disks: list[DiskCopy], still: Callable[[], Awaitable[None]],
                          interval: float) -> None:
    """Stream each disk from `src` into its volume on `dest`, read it back from `dest` and
    compare; `still()` (raising MoveFailed) is asked before each disk that the VM has not
    been started meanwhile. Raises Cancelled once the job is cancelled."""
    src_link, dest_link = fleet.link(src), fleet.link(dest)
    total = 2 * sum(d.allocated for d in disks)
    job.bytes_total = total
    done = 0
    for d in disks:
        await still()
        job.set_state(JobState.COPYING_DISKS, f"Copying disk {d.dev} to {d.dest_path} on "
                      f"'{dest}' through the console (libvirt volume streams)")
        sent = await _stream(fleet, job, done, total, interval, partial(
            src_link.send_volume, d.source_path, dest_link.uri, d.dest_path))
        done += sent.data_bytes
        job.set_state(JobState.COPYING_DISKS, f"Verifying disk {d.dev}: reading "
                      f"{d.dest_path} back from '{dest}'")
        seen = await _stream(fleet, job, done, total, interval,
                             partial(dest_link.volume_digest, d.dest_path))
        done += seen.data_bytes
        if (seen.length, seen.digest) != (sent.length, sent.digest):
            raise MoveFailed(f"The copy of disk {d.dev} on '{dest}' does not match what "
                             f"was sent (read back: {seen.length} bytes, SHA-256 "
                             f"{seen.digest[:12]}...; sent: {sent.length} bytes, "
                             f"{sent.digest[:12]}...).")
        job.messages.append(f"Disk {d.dev}: {sent.length} bytes copied to {d.dest_path} "
                            f"({sent.data_bytes} as data, the rest holes) and verified "
                            f"(SHA-256 of the data {sent.digest[:16]}...)")
    await still()


async def _stream(fleet: Fleet, job: Job, base: int, total: int, interval: float,
                  fn: Callable[[Callable[[int, int], None], threading.Event], VolumeDigest]
                  ) -> VolumeDigest:
    """Run one volume stream (a copy or a read-back) with the job's progress and cancel."""
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    last = [0.0]

    def progress(done: int, _total: int) -> None:  # on the stream's thread
        now = time.monotonic()
        if now - last[0] >= 0.2:
            last[0] = now
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(job.progress, base + done, total)

    call = run_long(f"stream-{job.vm_name}", lambda: fn(progress, cancel))
    while not call.done():
        await asyncio.wait([call], timeout=interval)
        if job.cancel_requested or fleet.closed:
            cancel.set()
    try:
        return call.result()
    except CopyCancelled:
        raise Cancelled() from None


async def still_halted(fleet: Fleet, server: str, uuid: str, name: str) -> None:
    """Raise MoveFailed unless the VM is still halted on `server` (it was started, or
    removed, while its disks were being copied)."""
    state = await fleet.call(server, fleet.link(server).locate, uuid)
    if state is not VmState.HALTED:
        raise MoveFailed(f"'{name}' was "
                         + ("removed from" if state is None else f"{state.value} on")
                         + f" '{server}' while its disks were being copied.")


async def backing_files(fleet: Fleet, server: str, paths: dict[str, str]) -> dict[str, str]:
    """Of these disks (dev -> file), those that are overlays on a backing file (dev -> it)."""
    link = fleet.link(server)
    out = {}
    for dev, path in paths.items():
        backing = await fleet.call(server, link.volume_backing, path)
        if backing:
            out[dev] = backing
    return out


async def layouts(fleet: Fleet, server: str, paths: dict[str, str]) -> dict[str, VolumeLayout]:
    """The image layout of each of these disks (dev -> file) on `server`, for its copy."""
    link = fleet.link(server)
    return {dev: await fleet.call(server, link.volume_layout, path)
            for dev, path in paths.items()}


def backing_refusal(name: str, backed: dict[str, str], remedy: str) -> str:
    disks = ", ".join(f"{dev} (on {path})" for dev, path in sorted(backed.items()))
    return (f"Disk(s) {disks} of '{name}' are overlays on a backing file, which a copy "
            f"through the console would not carry. {remedy}")
