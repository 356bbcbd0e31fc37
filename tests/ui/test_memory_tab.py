"""The Memory tab: a VM against its static maximum with its DMC range, a server shared out
between its VMs, its own use and what is free (ui.memory_tab)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QApplication, QDialog

from tests.ui.fakes import WEB, FakeEngine, change
from xencenter_lite.core.model import VmState
from xencenter_lite.ui.memory_tab import TOP_VMS, server_bar, vm_bar
from xencenter_lite.ui.properties import PropertiesView

MIB, GIB = 1024**2, 1024**3


def test_a_vms_bar_is_its_memory_now_against_its_static_maximum(fake: FakeEngine) -> None:
    change(fake.fleet, "web-1", memory=2 * GIB, current_memory=768 * MIB,
           dynamic_min=512 * MIB, dynamic_max=2 * GIB)
    vm = fake.fleet.snapshot().vm(WEB)
    assert vm is not None
    bar = vm_bar(vm)
    assert bar.total == 2 * GIB
    assert [(s.label, s.size) for s in bar.segments] == [
        ("Current memory", 768 * MIB), ("Up to the static maximum", 2 * GIB - 768 * MIB)]
    assert bar.marks == (("Dynamic minimum", 512 * MIB), ("Dynamic maximum", 2 * GIB))
    change(fake.fleet, "web-1", state=VmState.HALTED, dynamic_min=None, dynamic_max=None)
    halted = fake.fleet.snapshot().vm(WEB)
    assert halted is not None
    assert [s.label for s in vm_bar(halted).segments] == ["Not running"]
    assert vm_bar(halted).marks == ()


def test_a_servers_bar_adds_up_to_its_memory(fake: FakeEngine) -> None:
    for i in range(TOP_VMS + 2):
        fake.fleet.vm(f"extra-{i}", "lab-b1", memory=(i + 1) * 64 * MIB)
    snap = fake.fleet.snapshot()
    server = snap.servers["lab-b1"]
    bar = server_bar(snap, server)
    labels = [s.label for s in bar.segments]
    # The largest VMs one by one, the rest together, the server's own use, what is free.
    assert labels[0] == "'app-1'" and labels[1] == f"'extra-{TOP_VMS + 1}'"
    assert labels[TOP_VMS] == "3 other VMs"
    assert labels[-2:] == ["The server's own use", "Free"]
    assert sum(s.size for s in bar.segments) == server.host_memory
    assert bar.segments[-1].size == server.free_memory


def test_the_memory_tab_follows_the_selection_and_opens_the_dialog(
        qtbot: Any, fake: FakeEngine) -> None:
    change(fake.fleet, "web-1", current_memory=768 * MIB, dynamic_min=512 * MIB,
           dynamic_max=1024 * MIB)
    fake.push()
    view = PropertiesView(fake)  # type: ignore[arg-type]
    qtbot.addWidget(view)
    view.show_object(("vm", WEB))
    assert [view.tabText(i) for i in range(view.count())][:2] == ["General", "Memory"]
    tab = view.memory
    assert "static maximum 1.0 GiB" in tab.heading.text()
    assert "from 512.0 MiB to 1.0 GiB" in tab.heading.text()
    assert tab.bar.accessibleDescription().startswith("1.0 GiB in all; Current memory: "
                                                      "768.0 MiB")
    view.setCurrentWidget(tab)
    tab.edit.click()
    dialogs = [w for w in QApplication.topLevelWidgets()
               if isinstance(w, QDialog) and w.objectName() == "memoryDialog"]
    assert dialogs and dialogs[-1].isVisible()
    for d in dialogs:
        d.close()
    view.show_object(("server", "lab-a1"))
    assert view.currentWidget() is tab  # the Memory tab stays on show from VM to server
    assert not tab.edit.isVisibleTo(view)
    assert "8.0 GiB free" in tab.heading.text()
    assert [s.label for s in tab.bar.bar.segments][-1] == "Free"
    view.show_object(("pool", "Production"))
    assert view.indexOf(tab) < 0
