"""What a job changed, and when it is safe to undo it: the entries of the undo log.

Every change a job makes on a server (a volume it creates, a VM it balloons down, the
half of a migration libvirt may leave on the destination, the disks a finished move leaves
behind) is written down as a Cleanup *before* the change is made, and crossed out once
the change is either undone or has become the VM's own. What cannot be undone at once (a
server that stopped answering) stays written down, outlives the process, and is finished by
the next engine that can prove it is safe.

Safe means, for every kind, that the decision is made from what the servers say now, never
from what the job believed: `decide` takes those facts and says what to do. A volume a
domain uses is never removed; nothing is removed from a server that is not proven to be a
different host from the one the VM runs on.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

from xencenter_lite.core.model import VmState


class CleanupKind(Enum):
    VOLUME = "volume"  # a volume the job created (a copy target, a probe)
    OLD_DISK = "old-disk"  # a disk the VM left behind on its old server once it moved
    INCOMING_DOMAIN = "incoming-domain"  # the destination's half of a failed migration
    BALLOON = "balloon"  # a VM squeezed to make room, to get its memory back
    DISK_MOVE = "disk-move"  # a disk move whose end is not known: keep the one in use
    # A halted VM the job started paused (no guest code ever runs in it) to send it
    # directly: turned off again wherever it is found paused.
    STARTED_PAUSED = "started-paused"


@dataclass(frozen=True)
class Cleanup:
    kind: CleanupKind
    server: str  # where the change is (inventory name)
    host_uuid: str  # that server's host UUID when it was made: never acted on elsewhere
    job: str  # the job's title, for the operator
    vm_uuid: str = ""  # the VM the job moved ("" for a probe)
    vm_name: str = ""
    # Where the VM must be found (running or not, with no job) before the change is undone:
    # its source for what a failed migration made, its destination for the old disks.
    vm_home: str = ""
    vm_home_uuid: str = ""
    sr: str = ""  # VOLUME: the SR and the volume's name in it
    volume: str = ""
    path: str = ""  # VOLUME (once known), OLD_DISK
    dev: str = ""  # DISK_MOVE: the disk, its old and new files and format
    old_path: str = ""
    new_path: str = ""
    fmt: str = ""
    target_vm: str = ""  # BALLOON: the squeezed VM and what it had before
    size: int = 0
    save: bool = False  # STARTED_PAUSED: it had a saved state: saved again, not turned off
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: float = field(default_factory=time.time)

    def describe(self) -> str:
        if self.kind is CleanupKind.VOLUME:
            what = self.path or f"volume '{self.volume}' in SR '{self.sr}'"
            if not self.vm_uuid:
                return f"remove the probe {what} from '{self.server}'"
            return (f"remove {what} from '{self.server}' once '{self.vm_name}' is known to "
                    f"run on '{self.vm_home}'")
        if self.kind is CleanupKind.OLD_DISK:
            return (f"remove {self.path} from '{self.server}' once '{self.vm_name}' is known "
                    f"to run on '{self.vm_home}'")
        if self.kind is CleanupKind.INCOMING_DOMAIN:
            return (f"remove the incomplete copy of '{self.vm_name}' from '{self.server}' "
                    f"once it is known to run on '{self.vm_home}'")
        if self.kind is CleanupKind.BALLOON:
            return (f"give VM {self.target_vm} on '{self.server}' its memory back once "
                    f"'{self.vm_name}' is known to run on '{self.vm_home}'")
        if self.kind is CleanupKind.STARTED_PAUSED:
            if self.save:
                return (f"save '{self.vm_name}' again on '{self.server}' if it is still "
                        "paused there (its saved state was restored paused only to move it)")
            return (f"turn '{self.vm_name}' off on '{self.server}' if it is still paused "
                    "there (it was halted, and was started paused only to be moved)")
        return (f"keep whichever of {self.old_path} and {self.new_path} disk {self.dev} of "
                f"'{self.vm_name}' uses on '{self.server}', remove the other")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cleanup:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["kind"] = CleanupKind(values["kind"])
        return cls(**values)


class Verdict(Enum):
    ACT = "act"  # undo it now (remove, restore, ...)
    DROP = "drop"  # nothing to do any more: already gone, or it became the VM's own
    WAIT = "wait"  # not provably safe yet: keep it and try again later


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    # DISK_MOVE: which file to remove, and whether the persistent definition must be made
    # to point at the file in use first.
    remove_path: str = ""
    repoint_to: str = ""


@dataclass(frozen=True)
class Place:
    """What one server says about the VM: reachable, its host UUID, the VM's state there
    (None: no such VM) and whether libvirt runs a job (a migration) on it."""

    reachable: bool
    host_uuid: str = ""
    state: VmState | None = None
    job: bool = False


@dataclass(frozen=True)
class Facts:
    here: Place  # the clean-up's own server
    home: Place | None = None  # the VM's vm_home (None when the entry names none)
    exists: bool = True  # the volume / domain / squeezed VM is still there
    in_use: bool = False  # a domain on `here` refers to the volume (or the old file)
    live_path: str | None = None  # DISK_MOVE: the disk's file in the running VM
    persistent_path: str | None = None  # and in its persistent definition


def _wait(reason: str) -> Decision:
    return Decision(Verdict.WAIT, reason)


def _vm_at_home(c: Cleanup, f: Facts) -> Decision | None:
    """None when the VM is proven to be at its home (and nowhere in a job), else why not."""
    home = f.home
    if home is None or not home.reachable:
        return _wait(f"'{c.vm_home}' cannot be reached to see where '{c.vm_name}' runs")
    if c.vm_home_uuid and home.host_uuid != c.vm_home_uuid:
        return _wait(f"'{c.vm_home}' now answers as another host ({home.host_uuid})")
    if home.host_uuid and home.host_uuid == f.here.host_uuid:
        return Decision(Verdict.DROP, f"'{c.vm_home}' and '{c.server}' are the same host")
    if home.state is None:
        return _wait(f"'{c.vm_name}' is not on '{c.vm_home}'")
    if home.job or f.here.job:
        return _wait(f"libvirt still runs a job on '{c.vm_name}'")
    return None


def decide(c: Cleanup, f: Facts) -> Decision:
    """What to do with one clean-up, from what the servers say now."""
    here = f.here
    if not here.reachable:
        return _wait(f"'{c.server}' cannot be reached")
    if c.host_uuid and here.host_uuid != c.host_uuid:
        return _wait(f"'{c.server}' now answers as another host ({here.host_uuid}); "
                     "nothing is removed there")
    if not f.exists:
        return Decision(Verdict.DROP, "already gone")

    if c.kind is CleanupKind.VOLUME:
        if c.vm_uuid:
            if here.state is not None and not here.job and not f.in_use:
                pass  # the VM is here but does not use it: ours, unused, safe to remove
            elif here.state is not None and f.in_use and not here.job:
                return Decision(Verdict.DROP, f"'{c.vm_name}' runs on '{c.server}' with it")
            else:
                blocked = _vm_at_home(c, f)
                if blocked is not None:
                    return blocked
        if f.in_use:
            return _wait("a domain on the server uses it")
        return Decision(Verdict.ACT)

    if c.kind is CleanupKind.OLD_DISK:
        if here.state is not None:
            return Decision(Verdict.DROP, f"'{c.vm_name}' is still on '{c.server}'")
        blocked = _vm_at_home(c, f)
        if blocked is not None:
            return blocked
        if f.in_use:
            return Decision(Verdict.DROP, "a domain on the server uses it")
        return Decision(Verdict.ACT)

    if c.kind is CleanupKind.INCOMING_DOMAIN:
        home = f.home
        if (here.state is not None and not here.job and home is not None
                and home.reachable and home.state is None):
            # Only here now (running, or paused or halted as it was when it left): the
            # migration ended, this is the VM.
            return Decision(Verdict.DROP, f"the migration ended: '{c.vm_name}' is on "
                            f"'{c.server}'")
        blocked = _vm_at_home(c, f)
        if blocked is not None:
            return blocked
        if here.state is None:
            return Decision(Verdict.DROP, "already gone")
        if here.state is VmState.RUNNING:
            return _wait(f"'{c.vm_name}' runs on both '{c.vm_home}' and '{c.server}'; "
                         "check both servers")
        return Decision(Verdict.ACT)

    if c.kind is CleanupKind.BALLOON:
        if here.state is not None and c.vm_uuid:
            return Decision(Verdict.DROP, f"'{c.vm_name}' runs on '{c.server}': it keeps the "
                            "memory it was given")
        blocked = _vm_at_home(c, f)
        if blocked is not None:
            return blocked
        return Decision(Verdict.ACT)

    if c.kind is CleanupKind.STARTED_PAUSED:
        if here.state is not VmState.PAUSED:
            # Gone (moved on), halted, or running: someone resumed it, it is theirs now.
            return Decision(Verdict.DROP, f"'{c.vm_name}' is not paused on '{c.server}'")
        if here.job:
            return _wait(f"libvirt still runs a job on '{c.vm_name}'")
        return Decision(Verdict.ACT)

    # DISK_MOVE
    if here.state is None:
        return _wait(f"'{c.vm_name}' is not on '{c.server}'")
    if here.job:
        return _wait(f"libvirt still runs a job on '{c.vm_name}'")
    live, persistent = f.live_path, f.persistent_path
    if live == c.new_path and persistent in (None, c.new_path, c.old_path):
        return Decision(Verdict.ACT, remove_path=c.old_path,
                        repoint_to=c.new_path if persistent == c.old_path else "")
    if live == c.old_path and persistent in (None, c.old_path):
        return Decision(Verdict.ACT, remove_path=c.new_path)
    if live is None and persistent is not None and persistent in (c.old_path, c.new_path):
        other = c.new_path if persistent == c.old_path else c.old_path
        return Decision(Verdict.ACT, remove_path=other)
    return _wait(f"disk {c.dev} of '{c.vm_name}' uses {live} (its definition: {persistent})")


def finishing_message(kinds: set[CleanupKind]) -> str | None:
    """What a migration that arrived still does, from what its undo log still has to unwind:
    the old disks it left on the source, a halted VM it started paused only to send it."""
    parts = []
    if CleanupKind.OLD_DISK in kinds:
        parts.append("removing the old disks from the source")
    if CleanupKind.STARTED_PAUSED in kinds:
        parts.append("turning off the VM started paused to be sent")
    text = " and ".join(parts)
    return text[:1].upper() + text[1:] if text else None
