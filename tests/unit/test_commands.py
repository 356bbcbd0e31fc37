"""Whether a command can run on the selection, and why not (core.commands)."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.builders import standard_fleet
from xencenter_lite.core.commands import (
    can_copy,
    can_edit_memory,
    can_migrate,
    can_migrate_to,
    can_migrate_to_pool,
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


def test_a_drop_on_a_server_says_what_the_checks_say() -> None:
    """The drop's verdict is the checks' first refusal: the same server, a disconnected one,
    too little memory (the plan's), a VM being moved."""
    f = standard_fleet()
    web = f.vm("web-1")
    assert can_migrate_to(f.snapshot(), [web.key], "lab-a2", set()).ok
    same = can_migrate_to(f.snapshot(), [web.key], "lab-a1", set())
    assert not same.ok and "lab-a1" in same.reason
    busy = can_migrate_to(f.snapshot(), [web.key], "lab-a2", {web.key})
    assert not busy.ok and "web-1" in busy.reason
    f.server("lab-a2", free_memory=0)
    short = can_migrate_to(f.snapshot(), [web.key], "lab-a2", set())
    assert not short.ok and "memory" in short.reason
    gone = can_migrate_to(f.snapshot(), [("lab-a1", "uuid-none")], "lab-a2", set())
    assert gone.reason == "The VM no longer exists; the tree is being refreshed."


def test_a_drop_on_a_pool_needs_one_member_that_takes_the_vms() -> None:
    """XenCenter's drop on a pool: any member will do (the wizard picks); refused, the
    reason is a member's own, not that the VM is already on the other."""
    f = standard_fleet()
    web = f.vm("web-1")  # on lab-a1, in pool Production with lab-a2
    assert can_migrate_to_pool(f.snapshot(), [web.key], "Production", set()).ok
    f.server("lab-a2", connected=False)
    verdict = can_migrate_to_pool(f.snapshot(), [web.key], "Production", set())
    assert not verdict.ok and "lab-a2" in verdict.reason, verdict.reason
    assert not can_migrate_to_pool(f.snapshot(), [web.key], "Nowhere", set()).ok
