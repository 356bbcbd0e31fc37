"""Whether a command can run on the selection, and why not (core.commands)."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.builders import standard_fleet
from xencenter_lite.core.commands import (
    can_copy,
    can_edit_memory,
    can_migrate,
    can_move_disk,
    can_set_default_sr,
    default_sr_owner,
)
from xencenter_lite.core.model import VmState


def test_a_pools_default_sr_must_be_on_every_member_and_not_already_it() -> None:
    f = standard_fleet()
    snap = f.snapshot()
    shared = snap.sr("lab-a1", "Shared storage")
    local = snap.sr("lab-a1", "Local storage")
    assert shared is not None and local is not None
    owner = default_sr_owner(snap, shared)
    assert (owner.kind, owner.name, owner.current) == ("pool", "Production", "Shared storage")
    assert can_set_default_sr(snap, shared).reason == \
        "'Shared storage' is already the default SR of pool 'Production'"
    # Each member has its "Local storage": a name the pool can use.
    assert can_set_default_sr(snap, local).ok


def test_an_sr_a_member_lacks_or_cannot_see_is_refused_naming_the_member() -> None:
    f = standard_fleet()
    fast = f.add_sr("lab-a1", "Fast storage", "/srv/lab-a1/fast")
    verdict = can_set_default_sr(f.snapshot(), fast)
    assert not verdict.ok
    assert verdict.reason == ("'lab-a2' has no active SR named 'Fast storage': every member "
                              "of pool 'Production' must have it")
    f.servers["lab-a2"] = replace(f.servers["lab-a2"], connected=False)
    local = f.snapshot().sr("lab-a1", "Local storage")
    assert local is not None
    assert "'lab-a2' is not connected" in can_set_default_sr(f.snapshot(), local).reason


def test_a_standalone_servers_default_sr() -> None:
    f = standard_fleet()
    snap = f.snapshot()
    fast, local = snap.sr("lab-b1", "Fast storage"), snap.sr("lab-b1", "Local storage")
    assert fast is not None and local is not None
    assert str(default_sr_owner(snap, fast)) == "'lab-b1'"
    assert can_set_default_sr(snap, fast).ok
    assert not can_set_default_sr(snap, local).ok  # already lab-b1's default
    f.srs[f.srs.index(fast)] = replace(fast, active=False)
    inactive = f.snapshot().sr("lab-b1", "Fast storage")
    assert inactive is not None
    assert can_set_default_sr(f.snapshot(), inactive).reason == \
        "'Fast storage' is inactive: start it first"


def test_vm_commands_say_why_they_cannot_run() -> None:
    f = standard_fleet()
    web = f.vm("web-1", "lab-a1")
    build = f.vm("build-1", "lab-a2", state=VmState.HALTED)
    odd = f.vm("odd-1", "lab-a1", state=VmState.OTHER)
    bare = f.vm("bare-1", "lab-b1", disks=())
    snap = f.snapshot()
    assert can_migrate(snap, [web, build], set()).ok
    assert can_migrate(snap, [web], {web.key}).reason == \
        "'web-1' is being migrated or has a disk being moved"
    assert "'odd-1' is" in can_migrate(snap, [web, odd], set()).reason
    assert can_migrate(snap, [web, None], set()).reason == "Select the VMs to migrate"
    assert can_copy(snap, [build], set()).ok
    assert can_copy(snap, [web], set()).reason == \
        "'web-1' is running: a VM is copied halted; shut it down first"
    assert can_copy(snap, [web, build], set()).reason == "Select one VM to copy"
    assert can_move_disk(snap, [bare]).reason == "'bare-1' has no disk to move"
    assert can_move_disk(snap, [web]).ok and can_edit_memory(snap, [web]).ok
    f.servers["lab-a1"] = replace(f.servers["lab-a1"], connected=False)
    assert can_edit_memory(f.snapshot(), [web]).reason.startswith("'lab-a1' is not connected")
