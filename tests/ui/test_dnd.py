"""Drag and drop of VMs onto servers and folders: the model's mime handling, the view's
drag feedback (highlight, refusal, status text), confirmation, and a real migration.

A real QDrag cannot run offscreen (the offscreen platform ends every drag at once with
IgnoreAction), so the view is driven with the drag-enter/move/drop events a drag delivers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QModelIndex, QPoint, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.conftest import until
from tests.labtools import vm_named
from tests.ui.fakes import BUILD, DB, MIB, WEB, FakeEngine
from tests.ui.vm_placement import place
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.ui import migrate_menu
from xencenter_lite.ui.common import KeyRole
from xencenter_lite.ui.main_window import MainWindow
from xencenter_lite.ui.resources import FOLDERS, INFRASTRUCTURE, MIME_VMS, ResourcesPane


@pytest.fixture
def pane(qtbot: Any, fake: FakeEngine) -> ResourcesPane:
    widget = ResourcesPane(fake)  # type: ignore[arg-type]
    qtbot.addWidget(widget)
    widget.resize(400, 600)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture
def wizards(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    opened: list[tuple[Any, ...]] = []
    monkeypatch.setattr(migrate_menu, "open_wizard",
                        lambda engine, keys, dest, parent: opened.append((keys, dest)))
    return opened


def drag_of(pane: ResourcesPane, *keys: Any) -> QMimeData:
    indexes = [pane.model.index_of(("vm", k)) for k in keys]
    data = pane.model.mimeData(indexes)
    assert data is not None
    return data


def on(pane: ResourcesPane, key: Any) -> QModelIndex:
    return pane.model.index_of(key)


def message_boxes() -> list[QMessageBox]:
    return [w for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.isVisible()]


# ---- the model ----------------------------------------------------------------------------
def test_mime_data_carries_the_vm_keys_and_only_vms(pane: ResourcesPane) -> None:
    data = drag_of(pane, WEB, DB)
    assert data.formats() == [MIME_VMS]
    assert pane.model.mimeData([on(pane, ("server", "lab-a1"))]) is None
    flags = pane.model.flags(on(pane, ("vm", WEB)))
    assert flags & Qt.ItemFlag.ItemIsDragEnabled
    assert not flags & Qt.ItemFlag.ItemIsDropEnabled
    assert pane.model.flags(on(pane, ("server", "lab-b1"))) & Qt.ItemFlag.ItemIsDropEnabled


def test_drop_targets_and_refusals(fake: FakeEngine, pane: ResourcesPane) -> None:
    model = pane.model
    move = Qt.DropAction.MoveAction

    def verdict(data: QMimeData, key: Any) -> tuple[bool, str]:
        ok = model.canDropMimeData(data, move, -1, -1, on(pane, key))
        assert ok == model.drop_verdict(data, on(pane, key))[0]
        return model.drop_verdict(data, on(pane, key))

    web = drag_of(pane, WEB)
    assert verdict(web, ("server", "lab-a2")) == (True, "Migrate 'web-1' to 'lab-a2'")
    ok, why = verdict(web, ("server", "lab-a1"))
    assert not ok and "Current server" in why
    assert verdict(web, ("vm", DB)) == (False, "")  # not a target
    # A pool takes it when one of its members can (the wizard then picks the member).
    assert verdict(web, ("pool", "Production")) == (
        True, "Migrate 'web-1' to pool 'Production' (choose the server next)")
    # A halted VM moves with its disks; a crashed one cannot move.
    assert verdict(drag_of(pane, BUILD), ("server", "lab-b1"))[0]
    fake.fleet.vms[:] = [replace(v, state=VmState.CRASHED) if v.key == BUILD else v
                         for v in fake.fleet.vms]
    fake.push()
    ok, why = verdict(drag_of(pane, BUILD), ("server", "lab-b1"))
    assert not ok and "is crashed: only a running, paused or halted VM" in why
    fake.fleet.vms[:] = [replace(v, state=VmState.HALTED) if v.key == BUILD else v
                         for v in fake.fleet.vms]
    fake.push()

    fake.fleet.server("lab-b1", free_memory=512 * MIB)
    fake.push()
    ok, why = verdict(drag_of(pane, WEB, DB), ("server", "lab-b1"))
    assert not ok and why.startswith("Cannot migrate 2 VMs to 'lab-b1': Not enough memory")

    fake.fleet.server("lab-a2", connected=False, error="connection refused")
    fake.push()
    ok, why = verdict(web, ("server", "lab-a2"))
    assert not ok and "not connected (connection refused)" in why
    # No other member can: the pool says why (the other member's reason, not "Current
    # server").
    ok, why = verdict(web, ("pool", "Production"))
    assert not ok and why.startswith("Cannot migrate 'web-1' to pool 'Production': 'lab-a2' "
                                     "is not connected (connection refused)"), why

    fake.busy.add(WEB)
    ok, why = verdict(web, ("server", "lab-b1"))
    assert not ok and "already has a migration" in why


def test_drop_on_a_pool_opens_the_wizard_with_the_pool_as_destination(
    fake: FakeEngine, pane: ResourcesPane, qtbot: Any, wizards: list[Any],
) -> None:
    assert pane.model.flags(on(pane, ("pool", "Production"))) & Qt.ItemFlag.ItemIsDropEnabled
    assert pane.model.dropMimeData(drag_of(pane, WEB, DB), Qt.DropAction.MoveAction, -1, -1,
                                   on(pane, ("pool", "Production")))
    qtbot.waitUntil(lambda: wizards == [([WEB, DB], "Production")])
    assert fake.migrated == [] and message_boxes() == []  # nothing moves before the wizard


def test_drop_on_a_server_confirms_a_memory_only_move(
    fake: FakeEngine, pane: ResourcesPane, qtbot: Any, wizards: list[Any],
) -> None:
    assert pane.model.dropMimeData(drag_of(pane, WEB), Qt.DropAction.MoveAction, -1, -1,
                                   on(pane, ("server", "lab-a2")))
    assert pane.index_of(("vm", WEB)).isValid()  # the drop never removes the dragged row
    assert not pane.model.removeRows(0, 1, QModelIndex())
    qtbot.waitUntil(lambda: len(message_boxes()) == 1)
    (box,) = message_boxes()
    assert box.text() == "Do you want to migrate the VM 'web-1' to the server 'lab-a2'?"
    box.button(QMessageBox.StandardButton.Yes).click()
    assert [[r.destination for r in reqs] for reqs in fake.migrated] == [["lab-a2"]]
    assert [r.vm for r in fake.migrated[0]] == [WEB]
    assert wizards == []


def test_drop_needing_a_disk_copy_opens_the_wizard_on_that_server(
    fake: FakeEngine, pane: ResourcesPane, qtbot: Any, wizards: list[Any],
) -> None:
    pane.model.dropMimeData(drag_of(pane, WEB, DB), Qt.DropAction.MoveAction, -1, -1,
                            on(pane, ("server", "lab-a2")))
    qtbot.waitUntil(lambda: bool(wizards))
    assert wizards == [([WEB, DB], "lab-a2")]  # db-1's local disks must be copied
    assert fake.migrated == [] and message_boxes() == []


def test_several_vms_are_confirmed_with_plural_wording(
    fake: FakeEngine, pane: ResourcesPane, qtbot: Any,
) -> None:
    fake.fleet.vm("web-2", "lab-a1")  # on shared storage too
    fake.push()
    pane.model.dropMimeData(drag_of(pane, WEB, ("lab-a1", "uuid-web-2")),
                            Qt.DropAction.MoveAction, -1, -1, on(pane, ("server", "lab-a2")))
    qtbot.waitUntil(lambda: len(message_boxes()) == 1)
    (box,) = message_boxes()
    assert box.text() == \
        "Do you want to migrate the VMs 'web-1' and 'web-2' to the server 'lab-a2'?"
    box.button(QMessageBox.StandardButton.Yes).click()
    assert [len(reqs) for reqs in fake.migrated] == [2]  # one call, one job per VM
    assert migrate_menu.confirm_text(["a", "b", "c"], "x").startswith(
        "Do you want to migrate the VMs 'a', 'b' and 'c'")


# ---- the view: feedback while dragging ------------------------------------------------------
def drag_over(pane: ResourcesPane, data: QMimeData, key: Any) -> QDragMoveEvent:
    viewport = pane.tree.viewport()
    index = pane.index_of(key)
    assert index.isValid(), key
    pos: QPoint = pane.tree.visualRect(index).center()
    actions = Qt.DropAction.MoveAction | Qt.DropAction.CopyAction
    enter = QDragEnterEvent(pos, actions, data, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(viewport, enter)
    move = QDragMoveEvent(pos, actions, data, Qt.MouseButton.LeftButton,
                          Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(viewport, move)
    return move


def test_dragging_highlights_a_server_that_can_take_the_vm(
    pane: ResourcesPane, qtbot: Any, wizards: list[Any],
) -> None:
    hints: list[str] = []
    pane.message.connect(hints.append)
    data = drag_of(pane, WEB)

    refused = drag_over(pane, data, ("server", "lab-a1"))
    assert not refused.isAccepted()  # the cursor says no
    assert not pane.tree.drop_target.isValid()
    assert "Current server" in hints[-1]

    accepted = drag_over(pane, data, ("server", "lab-a2"))
    assert accepted.isAccepted()
    assert pane.tree.drop_target.data(KeyRole) == ("server", "lab-a2")
    assert hints[-1] == "Migrate 'web-1' to 'lab-a2'"

    pos = pane.tree.visualRect(pane.index_of(("server", "lab-a2"))).center()
    drop = QDropEvent(pos, Qt.DropAction.MoveAction | Qt.DropAction.CopyAction, data,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(pane.tree.viewport(), drop)
    assert drop.isAccepted()
    assert not pane.tree.drop_target.isValid()
    qtbot.waitUntil(lambda: len(message_boxes()) == 1)
    message_boxes()[0].button(QMessageBox.StandardButton.No).click()
    assert pane.index_of(("vm", WEB)).isValid()


def test_folder_view_drop_moves_vms_into_the_folder(
    fake: FakeEngine, pane: ResourcesPane, qtbot: Any, run: Any,
) -> None:
    pane.set_view(FOLDERS)
    data = drag_of(pane, WEB)
    assert not pane.model.canDropMimeData(data, Qt.DropAction.MoveAction, -1, -1,
                                          on(pane, ("folder", "/Web")))  # already there
    assert drag_over(pane, data, ("folder", "/Databases/Prod")).isAccepted()
    assert pane.model.dropMimeData(data, Qt.DropAction.MoveAction, -1, -1,
                                   on(pane, ("folder", "/Databases/Prod")))
    run(until(lambda: fake.snapshot().vm(WEB).folder == "/Databases/Prod"))
    assert pane.model.keys(("folder", "/Databases/Prod")) == [("vm", DB), ("vm", WEB)]
    # The folder it left stays, empty (a folder is there until it is deleted).
    assert pane.index_of(("folder", "/Web")).isValid()
    assert pane.model.keys(("folder", "/Web")) == []
    pane.set_view(INFRASTRUCTURE)  # folders are not drop targets in Infrastructure
    assert pane.model.flags(on(pane, ("server", "lab-b1"))) & Qt.ItemFlag.ItemIsDropEnabled


# ---- the real lab ---------------------------------------------------------------------------
@pytest.fixture
def window(qtbot: Any, engine: Any) -> MainWindow:
    win = MainWindow(engine)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.mark.lab
def test_real_drop_migrates_web_1_inside_the_pool(
    window: MainWindow, engine: Any, run: Any, qtbot: Any,
) -> None:
    web = place(engine, run, "web-1", "lab-a1")
    other = "lab-a2"
    pane = window.resources
    app = vm_named(engine, "app-1")
    pane.select(("vm", app.key))  # the operator looks at app-1 meanwhile

    hints: list[str] = []
    pane.message.connect(hints.append)
    drag_over(pane, pane.model.mimeData([pane.model.index_of(("vm", web.key))]),
              ("server", "lab-a1"))
    assert "Current server" in window.statusBar().currentMessage()

    data = pane.model.mimeData([pane.model.index_of(("vm", web.key))])
    assert pane.model.dropMimeData(data, Qt.DropAction.MoveAction, -1, -1,
                                   pane.model.index_of(("server", other)))
    qtbot.waitUntil(lambda: len(message_boxes()) == 1)
    (box,) = message_boxes()
    assert box.text() == f"Do you want to migrate the VM 'web-1' to the server '{other}'?"
    box.button(QMessageBox.StandardButton.Yes).click()

    job = engine.jobs[-1]
    assert job.vm_key == web.key and job.destination == other
    run(until(lambda: job.state.finished, timeout=60))
    assert job.state is JobState.DONE, (job.error, job.error_details)
    moved = vm_named(engine, "web-1")
    run(until(lambda: pane.index_of(("vm", moved.key)).isValid()))
    parent = pane.proxy.parent(pane.index_of(("vm", moved.key)))
    assert moved.server == other and parent.data(KeyRole) == ("server", other)
    assert not pane.index_of(("vm", web.key)).isValid()
    assert pane.selected_keys() == [("vm", app.key)]  # the other selection was kept
    assert window.findChild(object, "jobStatus").text() == \
        f"Migrating 'web-1' to '{other}': Completed"


@pytest.mark.lab
def test_real_folder_drop_changes_the_vm_metadata(
    window: MainWindow, engine: Any, run: Any,
) -> None:
    pane = window.resources
    pane.set_view(FOLDERS)
    app = vm_named(engine, "app-1")
    data = pane.model.mimeData([pane.model.index_of(("vm", app.key))])
    assert pane.model.dropMimeData(data, Qt.DropAction.MoveAction, -1, -1,
                                   pane.model.index_of(("folder", "/Web")))
    status = window.statusBar()
    run(until(lambda: vm_named(engine, "app-1").folder == "/Web"
              or status.currentMessage().startswith("Could not")))
    try:
        assert vm_named(engine, "app-1").folder == "/Web", status.currentMessage()
        run(until(lambda: ("vm", app.key) in pane.model.keys(("folder", "/Web"))))
        # (The VM's metadata event can refresh the tree before the move's own call has
        # returned; the status bar says so once it has.)
        run(until(lambda: status.currentMessage() == "Moved to folder '/Web'", timeout=5))
    finally:
        if vm_named(engine, "app-1").folder:
            run(engine.set_folder(app.key, ""))
