"""Migrate to Server ▸: every server, checked in the background, disabled with a reason."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.conftest import until
from tests.labtools import vm_named
from tests.ui.fakes import BUILD, MIB, WEB, FakeEngine
from xencenter_lite.core.model import VmState
from xencenter_lite.ui import migrate_menu
from xencenter_lite.ui.main_window import MainWindow
from xencenter_lite.ui.migrate_menu import MigrateToServerMenu


@pytest.fixture
def wizards(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    opened: list[tuple[Any, ...]] = []
    monkeypatch.setattr(migrate_menu, "open_wizard",
                        lambda engine, keys, dest, parent: opened.append((keys, dest)))
    return opened


def menu_for(qtbot: Any, run: Any, engine: Any, keys: list[Any]) -> MigrateToServerMenu:
    menu = MigrateToServerMenu(engine, lambda: list(keys))
    qtbot.addWidget(menu)
    menu.refresh()
    assert all(not enabled and text.endswith("(Updating…)")
               for text, enabled in menu.entries()[:-1])
    run(until(lambda: menu.pending == 0))
    return menu


def test_entries_say_why_a_server_cannot_take_the_vm(qtbot: Any, run: Any,
                                                     fake: FakeEngine) -> None:
    menu = menu_for(qtbot, run, fake, [WEB])
    # Placement's stars: lab-a2 is in web-1's pool and sees its disk; lab-b1 needs a copy.
    assert menu.entries() == [("lab-a1 (Current server)", False), ("lab-a2  ★★★★☆", True),
                              ("lab-b1  ★★☆☆☆", True), ("Migrate VM wizard…", True)]
    optimal = menu.optimal()
    assert optimal is not None and optimal.text() == "&Optimal Server: lab-a2"
    assert "no disk copy" in optimal.toolTip()
    tip = next(a.toolTip() for a in menu.actions() if a.text().startswith("lab-b1"))
    assert tip.startswith("27/100: ") and "copies 10.0 GiB of disks" in tip

    fake.fleet.server("lab-a2", free_memory=256 * MIB)
    fake.fleet.server("lab-b1", connected=False, error="connection refused")
    fake.push()
    menu = menu_for(qtbot, run, fake, [WEB])
    assert menu.entries()[:3] == [("lab-a1 (Current server)", False),
                                  ("lab-a2 (Not enough memory)", False),
                                  ("lab-b1 (Disconnected)", False)]
    assert menu.optimal() is None  # no server can take it
    tips = [a.toolTip() for a in menu.actions()]
    assert "Not enough memory on 'lab-a2'" in tips[1]
    assert "connection refused" in tips[2]


def test_a_halted_vm_goes_where_it_fits_and_a_crashed_one_nowhere(
        qtbot: Any, run: Any, fake: FakeEngine) -> None:
    fake.fleet.server("lab-b1", free_memory=0)  # a halted VM needs no memory there
    fake.push()
    menu = menu_for(qtbot, run, fake, [BUILD])
    entries = menu.entries()[:3]
    assert entries[1] == ("lab-a2 (Current server)", False)
    assert entries[0][1] and entries[2][1], entries
    fake.fleet.vms[:] = [replace(v, state=VmState.CRASHED) if v.key == BUILD else v
                         for v in fake.fleet.vms]
    fake.push()
    menu = menu_for(qtbot, run, fake, [BUILD])
    assert menu.entries()[:3] == [("lab-a1 (Cannot move in its state)", False),
                                  ("lab-a2 (Current server)", False),
                                  ("lab-b1 (Cannot move in its state)", False)]


def test_storage_choices_do_not_disable_an_entry(qtbot: Any, run: Any, fake: FakeEngine,
                                                 wizards: list[Any]) -> None:
    fake.fleet.sr("lab-b1", "Local storage", available=1 * MIB)  # default SR too small
    fake.push()
    menu = menu_for(qtbot, run, fake, [WEB])
    assert ("lab-b1", True) in menu.entries()  # the wizard lets the operator pick an SR
    next(a for a in menu.actions() if a.text() == "lab-b1").trigger()
    assert wizards == [([WEB], "lab-b1")]
    assert fake.migrated == []


def test_choosing_a_pool_member_confirms_then_migrates(qtbot: Any, run: Any,
                                                        fake: FakeEngine) -> None:
    menu = menu_for(qtbot, run, fake, [WEB])
    next(a for a in menu.actions() if a.text().startswith("lab-a2 ")).trigger()
    boxes = [w for w in QApplication.topLevelWidgets()
             if isinstance(w, QMessageBox) and w.isVisible()]
    assert [b.text() for b in boxes] == [
        "Do you want to migrate the VM 'web-1' to the server 'lab-a2'?"]
    boxes[0].button(QMessageBox.StandardButton.Yes).click()
    assert [[(r.vm, r.destination) for r in reqs] for reqs in fake.migrated] == [
        [(WEB, "lab-a2")]]


def test_the_wizard_entry_opens_the_wizard_without_a_destination(
    qtbot: Any, run: Any, fake: FakeEngine, wizards: list[Any],
) -> None:
    menu = menu_for(qtbot, run, fake, [WEB, ("lab-b1", "uuid-app-1")])
    assert menu.optimal() is None  # stars and "Optimal Server" are for one VM
    assert ("lab-a2", True) in menu.entries()
    menu.actions()[-1].trigger()
    assert wizards == [([WEB, ("lab-b1", "uuid-app-1")], None)]


def test_a_rebuilt_menu_ignores_late_answers(qtbot: Any, run: Any, fake: FakeEngine) -> None:
    menu = MigrateToServerMenu(fake, lambda: [WEB])
    qtbot.addWidget(menu)
    menu.refresh()
    menu.refresh()  # the first round's checks come back to deleted actions
    run(until(lambda: menu.pending == 0))
    assert [t for t, _ in menu.entries()] == ["lab-a1 (Current server)", "lab-a2  ★★★★☆",
                                              "lab-b1  ★★☆☆☆", "Migrate VM wizard…"]


@pytest.mark.lab
def test_real_menu_checks_every_server(qtbot: Any, run: Any, engine: Any) -> None:
    window = MainWindow(engine)
    qtbot.addWidget(window)
    web = vm_named(engine, "web-1")
    build = vm_named(engine, "build-1")
    window.resources.select(("vm", web.key))
    assert window.migrate_menu.isEnabled()
    window.migrate_menu.refresh()
    run(until(lambda: window.migrate_menu.pending == 0))
    entries = dict(window.migrate_menu.entries())
    assert entries[f"{web.server} (Current server)"] is False
    pool_mate = {"lab-a1": "lab-a2", "lab-a2": "lab-a1"}.get(web.server)
    if pool_mate:
        (text,) = [t for t in entries if t.split()[0] == pool_mate]
        assert entries[text] is True and text.startswith(f"{pool_mate}  ★")

    window.resources.select(("vm", build.key))
    assert window.migrate_menu.isEnabled()  # halted: it moves with its disks
    menu = menu_for(qtbot, run, engine, [build.key])
    assert (f"{build.server} (Current server)", False) in menu.entries()
    others = [(t, on) for t, on in menu.entries()[:-1] if not t.startswith(build.server)]
    assert others and all(on for _t, on in others), others


def test_start_on_server_offers_the_servers_that_see_the_disks_and_says_why_not(
        qtbot: Any, run: Any, fake: FakeEngine) -> None:
    # build-1 is halted on lab-a2 with its disk on the pool's shared SR.
    menu = migrate_menu.StartOnServerMenu(fake, lambda: [BUILD])
    qtbot.addWidget(menu)
    menu.refresh()
    assert menu.entries() == [("lab-a1", True), ("lab-a2 (Current server)", True),
                              ("lab-b1 (Cannot see the VM's disks)", False)]
    tip = next(a.toolTip() for a in menu.actions() if a.data() == "lab-b1")
    assert "'lab-b1' cannot see the disks of 'build-1'" in tip
    fake.fleet.server("lab-a1", free_memory=64 * MIB)
    fake.push()
    menu.refresh()
    assert menu.entries()[0] == ("lab-a1 (Not enough memory)", False)
    next(a for a in menu.actions() if a.data() == "lab-a2").trigger()
    run(until(lambda: fake.started_on == [(BUILD, "lab-a2")]))
    # A running VM starts nowhere.
    menu = migrate_menu.StartOnServerMenu(fake, lambda: [WEB])
    qtbot.addWidget(menu)
    menu.refresh()
    assert all(not on for _t, on in menu.entries())
    assert menu.entries()[0] == ("lab-a1 (Not halted)", False)
