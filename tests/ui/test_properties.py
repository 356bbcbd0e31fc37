"""The General and Storage tabs for the selected object."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from tests.labtools import vm_named
from tests.ui.fakes import DB, WEB, FakeEngine, change
from xencenter_lite.core.jobs import Job, JobKind, JobState
from xencenter_lite.core.model import Nic, Sharing, VirtualNetwork, VmState
from xencenter_lite.ui.properties import PropertiesView


@pytest.fixture
def view(qtbot: Any, fake: FakeEngine) -> PropertiesView:
    widget = PropertiesView(fake)  # type: ignore[arg-type]
    qtbot.addWidget(widget)
    return widget


def tabs(view: PropertiesView) -> list[str]:
    return [view.tabText(i) for i in range(view.count())]


def test_with_nothing_selected_the_home_pane_counts_the_fleet(
        fake: FakeEngine, view: PropertiesView) -> None:
    view.show_object(None)  # as at start-up
    g = view.general
    assert g.heading.text() == "XenCenter Lite"
    assert [(label, g.value(label)) for label in
            ("Pools", "Servers", "VMs", "Storage repositories", "Jobs running")] == [
        ("Pools", "1"), ("Servers", "3 (3 connected)"), ("VMs", "4 (1 halted, 3 running)"),
        # lab-a1, lab-a2 and lab-b1's Local, the pool's Shared (once), lab-b1's Fast, Small
        ("Storage repositories", "6"), ("Jobs running", "0")]
    assert tabs(view) == ["General"]
    fake.fleet.server("lab-b1", connected=False, error="connection refused")
    fake.push()
    assert g.value("Servers") == "3 (2 connected, 1 not connected)"
    job = Job(JobKind.MIGRATE, "Migrating 'web-1' to 'lab-a2'", WEB, "web-1", "lab-a1",
              "lab-a2")
    fake.push_job(job)
    assert g.value("Jobs running") == "1"
    job.fail("refused", "raw")
    fake.push_job(job)
    assert (g.value("Jobs running"), g.value("Jobs failed")) == ("0", "1 (see Events)")


def test_vm_general_tab_and_live_updates(fake: FakeEngine, view: PropertiesView) -> None:
    view.show_object(("vm", WEB))
    g = view.general
    assert g.heading.text() == "web-1"
    assert (g.value("State"), g.value("Static maximum"), g.value("vCPUs"), g.value("Server"),
            g.value("Folder")) == ("Running", "1.0 GiB", "1", "lab-a1", "/Web")
    assert g.value("Current memory") == "1.0 GiB"
    assert g.value("Dynamic minimum / maximum") == "Not set"
    assert g.memory_button.isVisibleTo(view)

    mib = 1024 * 1024
    change(fake.fleet, "web-1", current_memory=768 * mib, dynamic_min=512 * mib,
           dynamic_max=1024 * mib)
    fake.push()
    assert g.value("Current memory") == "768.0 MiB"
    assert g.value("Dynamic minimum / maximum") == "512.0 MiB / 1.0 GiB"
    assert g.value("Home server") == "(none)"
    assert tabs(view) == ["General", "Memory", "Storage", "Networking", "Performance"]

    change(fake.fleet, "web-1", state=VmState.PAUSED, home_server="lab-a1")
    fake.push()
    assert g.value("State") == "Paused" and g.value("Home server") == "lab-a1"
    assert g.value("Current memory") == "(not running)"

    job = Job(JobKind.MIGRATE, "Migrating 'web-1' to 'lab-a2'", WEB, "web-1", "lab-a1",
              "lab-a2")
    job.set_state(JobState.COPYING_MEMORY)
    job.progress(1, 4)
    fake.push_job(job)
    assert g.value("State") == ("Paused — Migrating 'web-1' to 'lab-a2' (copying memory, 25%)")


def test_server_pool_and_sr_general_tabs(fake: FakeEngine, view: PropertiesView) -> None:
    view.show_object(("server", "lab-a1"))
    g = view.general
    assert g.value("Pool") == "Production" and g.value("Status") == "Connected"
    assert not g.memory_button.isVisibleTo(view)  # a VM's button
    assert g.value("Memory free for VMs") == "8.0 GiB"  # what libvirt reports free
    assert g.value("Address (storage)") == "198.51.100.11"
    assert tabs(view) == ["General", "Memory", "Networking", "Performance"]  # Storage is a VM's tab
    assert not view.storage.isVisibleTo(view)  # nor drawn over the tabs
    view.show_object(("vm", WEB))
    assert tabs(view) == ["General", "Memory", "Storage", "Networking", "Performance"]
    view.show_object(("server", "lab-a1"))
    assert tabs(view) == ["General", "Memory", "Networking", "Performance"]
    assert not view.storage.isVisibleTo(view)

    fake.fleet.server("lab-b1", connected=False, error="connection refused")
    fake.push()
    view.show_object(("server", "lab-b1"))
    assert g.value("Status") == "Disconnected: connection refused"
    assert g.value("Pool") == "(standalone)"

    view.show_object(("pool", "Production"))
    assert tabs(view) == ["General"]
    assert g.value("Servers") == "lab-a1, lab-a2" and g.value("Default SR") == "Shared storage"

    view.show_object(("sr", ("Production", "Shared storage")))
    assert (g.value("Type"), g.value("Shared"), g.value("Path"), g.value("Seen by")) == (
        "netfs", "Shared (verified)", "/srv/nfs/shared", "pool Production")
    assert g.value("Size") == "500.0 GiB" and g.value("Free") == "200.0 GiB"
    # Its disks, with their VMs, from every member of the pool.
    assert g.value("Virtual disks") == "vda of build-1 (10.0 GiB), vda of web-1 (10.0 GiB)"
    view.show_object(("sr", ("lab-a1", next(s.uuid for s in fake.snapshot().srs_on("lab-a1")
                                            if s.name == "Local storage"))))
    assert g.value("Virtual disks") == "vda of db-1 (10.0 GiB), vdb of db-1 (10.0 GiB)"

    # virt-install's `default` pool: the same name and path on both members, proven not
    # to be the same storage.
    for server in ("lab-a1", "lab-a2"):
        fake.fleet.add_sr(server, "default", "/var/lib/libvirt/images",
                          sharing=Sharing.NOT_SHARED)
    fake.push()
    local = next(s for s in fake.snapshot().srs_on("lab-a1") if s.name == "default")
    view.show_object(("sr", ("lab-a1", local.uuid)))
    assert (g.value("Shared"), g.value("Seen by")) == (
        "Same name on each server, but not shared", "lab-a1")
    view.show_object(("server", "lab-a1"))
    assert g.value("Host UUID") == "host-uuid-lab-a1"

    view.show_object(("folder", "/Web"))
    assert g.value("VMs") == "web-1"
    view.show_object(None)  # nothing selected: the home pane
    assert g.heading.text() == "XenCenter Lite" and tabs(view) == ["General"]
    view.show_object(("server", "lab-a1"))
    view.show_object(("root", ""))  # the tree's root node: the home pane too
    assert g.heading.text() == "XenCenter Lite" and tabs(view) == ["General"]


def test_storage_tab_lists_disks_and_moves_the_selected_one(
    fake: FakeEngine, view: PropertiesView, monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[tuple[Any, ...]] = []

    class FakeDialog:
        def __init__(self, engine: Any, vm_key: Any, dev: Any = None, parent: Any = None):
            opened.append((engine, vm_key, dev, parent))

        def open(self) -> None:
            opened.append(("open",))

    monkeypatch.setitem(sys.modules, "xencenter_lite.ui.move_disk",
                        types.SimpleNamespace(MoveDiskDialog=FakeDialog))
    view.show_object(("vm", DB))
    storage = view.storage
    table = storage.table
    cells = [[table.item(r, c).text() for c in range(table.columnCount())]
             for r in range(table.rowCount())]
    assert cells == [
        ["vda", "Local storage", "10.0 GiB", "1.0 GiB", "/srv/lab-a1/local/db-1-vda.qcow2"],
        ["vdb", "Local storage", "10.0 GiB", "1.0 GiB", "/srv/lab-a1/local/db-1-vdb.qcow2"],
    ]
    assert not storage.move_button.isEnabled()  # nothing selected yet
    storage.select_dev("vdb")
    assert storage.move_button.isEnabled()
    fake.push()  # an update with the same disks keeps the selection
    assert storage.selected_dev() == "vdb"
    storage.move_button.click()
    assert opened[0][1:3] == (DB, "vdb") and opened[-1] == ("open",)


def test_networking_tab_lists_a_vms_nics_and_what_a_server_offers(
        fake: FakeEngine, view: PropertiesView) -> None:
    change(fake.fleet, "web-1", nics=(Nic("52:54:00:00:00:01", "network", "lan", "virtio"),
                                      Nic("52:54:00:00:00:02", "bridge", "br0", "e1000")))
    fake.fleet.server("lab-a1", virtual_networks=(VirtualNetwork("lan", True, "virbr1", "nat"),
                                                  VirtualNetwork("old", False)),
                      bridges=frozenset({"br0", "virbr1"}))
    fake.push()
    view.show_object(("vm", WEB))
    net = view.networking
    rows = [[net.cell(r, c) for c in range(3)] for r in range(net.table.rowCount())]
    assert rows == [["52:54:00:00:00:01", "virtio", "network 'lan'"],
                    ["52:54:00:00:00:02", "e1000", "bridge 'br0'"]]
    view.show_object(("server", "lab-a1"))
    rows = [[net.cell(r, c) for c in range(3)] for r in range(net.table.rowCount())]
    assert rows == [["lan", "network (bridge virbr1)", "active"],
                    ["old", "network", "inactive"], ["br0", "bridge", "in use"],
                    ["virbr1", "bridge", "in use"]]


@pytest.mark.lab
def test_real_server_tab(qtbot: Any, engine: Any) -> None:
    view = PropertiesView(engine)
    qtbot.addWidget(view)
    web = vm_named(engine, "web-1")
    view.show_object(("server", web.server))
    assert view.general.value("Status") == "Connected"
    assert view.general.value("Address (storage)") is not None
    view.show_object(("vm", web.key))
    assert view.storage.table.item(0, 1).text() == "Shared storage"
