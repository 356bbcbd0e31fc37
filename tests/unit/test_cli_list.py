"""`list` in words: what each VM and SR is, in an order that does not change between runs."""

from __future__ import annotations

import io

from tests.unit.builders import Fleet, cdrom, standard_fleet
from xencenter_lite.cli import cmd_list


def _listing(fleet: Fleet) -> list[str]:
    out = io.StringIO()
    assert cmd_list(fleet.snapshot(), False, out) == 0
    return out.getvalue().splitlines()


def test_cds_transient_vms_and_inactive_srs_are_named_so_and_vms_come_in_name_order():
    f = standard_fleet()
    f.vm("web-2", "lab-a1")
    f.vm("app-1", "lab-a1", disks=(*f.vm("tmp", "lab-b1").disks, cdrom("/isos/debian.iso")),
         persistent=False)
    f.vm("db-1", "lab-a1", disks=(cdrom(None, "sdb"),))
    f.sr("lab-b1", "Fast storage", active=False)
    lines = _listing(f)
    a1 = [line for line in lines[lines.index(next(x for x in lines if x.startswith("lab-a1"))):]
          if line.startswith("  VM")][:3]
    assert [line.split()[1] for line in a1] == ["app-1", "db-1", "web-2"]
    assert "[running, transient]" in a1[0] and "sda CD /isos/debian.iso" in a1[0]
    assert "sdb CD (empty)" in a1[1]
    assert "[running]" in a1[2] and "transient" not in a1[2]
    assert "  SR Fast storage (dir): inactive" in lines
    assert _listing(f) == lines  # the same every time
