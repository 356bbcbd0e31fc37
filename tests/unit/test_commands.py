"""Which SR can become a default SR, and why not (core.commands)."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.builders import standard_fleet
from xencenter_lite.core.commands import can_set_default_sr, default_sr_owner


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
