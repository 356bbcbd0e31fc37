"""The Resources pane's models and tree: contents per view, incremental updates that keep
selection and expansion, search. Hand-built snapshots (no libvirt) keep these fast; the
last tests check the same on the real lab.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QMessageBox

from tests.conftest import until
from tests.labtools import vm_named
from tests.ui.fakes import FakeEngine, change, lab_fleet
from tests.unit.builders import standard_fleet
from xencenter_lite.core.jobs import Job, JobKind, JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.ui.common import KeyRole
from xencenter_lite.ui.resources import (
    FOLDERS,
    INFRASTRUCTURE,
    NO_FOLDER,
    SERVERS_GROUP,
    ResourceModel,
    ResourcesPane,
)


def vm_key(name: str, server: str) -> tuple[str, Any]:
    return ("vm", (server, f"uuid-{name}"))


def shown(model: Any, parent: QModelIndex | None = None, depth: int = 0) -> list[str]:
    """The tree as the operator reads it, one indented line per row."""
    parent = parent or QModelIndex()
    lines = []
    for r in range(model.rowCount(parent)):
        index = model.index(r, 0, parent)
        lines.append("  " * depth + index.data())
        lines += shown(model, index, depth + 1)
    return lines


@pytest.fixture
def pane(qtbot: Any, fake: FakeEngine) -> ResourcesPane:
    widget = ResourcesPane(fake)  # type: ignore[arg-type]
    qtbot.addWidget(widget)
    return widget


# ---- contents ------------------------------------------------------------------------------
def test_infrastructure_view_groups_pools_servers_vms_and_srs(pane: ResourcesPane) -> None:
    assert shown(pane.proxy) == [
        "XenCenter Lite",  # the root node: every pool and server is under it
        "  Production",
        "    lab-a1",
        "      db-1",
        "      web-1",
        "      Local storage",
        "    lab-a2",
        "      build-1",
        "      Local storage",
        "    Shared storage",
        "  lab-b1",
        "    app-1",
        "    Fast storage",
        "    Local storage",
        "    Small storage",
    ]
    index = pane.index_of(vm_key("web-1", "lab-a1"))
    assert index.data(KeyRole) == vm_key("web-1", "lab-a1")
    assert pane.index_of(("sr", ("Production", "Shared storage"))).isValid()


def test_folder_view_nests_folders_and_lists_servers_as_drop_targets(
    pane: ResourcesPane,
) -> None:
    pane.set_view(FOLDERS)
    assert shown(pane.proxy) == [
        "Databases",
        "  Prod",
        "    db-1",
        "Web",
        "  web-1",
        "(no folder)",
        "  app-1",
        "  build-1",
        "Servers",
        "  lab-a1",
        "  lab-a2",
        "  lab-b1",
    ]
    assert pane.model.keys(SERVERS_GROUP) == [("server", s) for s in ("lab-a1", "lab-a2",
                                                                      "lab-b1")]
    assert pane.view_selector.currentText() == "Folder View"


def test_disconnected_and_migrating_rows_say_so(fake: FakeEngine, pane: ResourcesPane) -> None:
    fake.fleet.server("lab-b1", connected=False, error="connection lost")
    fake.push()
    model = pane.models[INFRASTRUCTURE]
    assert model.row_for(("server", "lab-b1")).icon == "server-disconnected"  # type: ignore[union-attr]
    assert pane.index_of(("server", "lab-b1")).data() == "lab-b1"
    assert pane.index_of(("server", "lab-b1")).data(Qt.ItemDataRole.ForegroundRole) is not None
    fake.fleet.server("lab-b1", connected=True, error=None)
    fake.push()  # it connects: the same row, no longer grey
    assert pane.index_of(("server", "lab-b1")).data(Qt.ItemDataRole.ForegroundRole) is None

    job = Job(JobKind.MIGRATE, "Migrating 'web-1' to 'lab-a2'", ("lab-a1", "uuid-web-1"),
              "web-1", "lab-a1", "lab-a2")
    fake.push_job(job)
    assert model.row_for(vm_key("web-1", "lab-a1")).text == "web-1 (Migrating: queued)"  # type: ignore[union-attr]
    job.set_state(JobState.COPYING_MEMORY)
    job.progress(42, 100)
    fake.push_job(job)
    row = model.row_for(vm_key("web-1", "lab-a1"))
    assert row is not None and row.text == "web-1 (Migrating 42%)" and row.icon == "vm-migrating"
    job.done()
    fake.push_job(job)
    assert model.row_for(vm_key("web-1", "lab-a1")).text == "web-1"  # type: ignore[union-attr]


def test_the_incoming_copy_of_a_migrating_vm_is_not_shown_twice(
    fake: FakeEngine, pane: ResourcesPane,
) -> None:
    web = fake.snapshot().vm(("lab-a1", "uuid-web-1"))
    assert web is not None
    fake.fleet.vms.append(replace(web, server="lab-a2", state=VmState.PAUSED, persistent=False))
    fake.push()
    assert pane.index_of(vm_key("web-1", "lab-a1")).isValid()
    assert not pane.index_of(vm_key("web-1", "lab-a2")).isValid()
    pane.set_view(FOLDERS)
    assert pane.model.keys(("folder", "/Web")) == [vm_key("web-1", "lab-a1")]


# ---- models -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [INFRASTRUCTURE, FOLDERS])
def test_models_pass_the_model_tester_through_updates(qtmodeltester: Any, mode: str) -> None:
    fleet = lab_fleet()
    model = ResourceModel(mode)
    qtmodeltester.check(model)  # stays attached: every later change is checked too
    model.apply(fleet.snapshot())
    change(fleet, "web-1", server="lab-a2", folder="/Databases")
    fleet.server("lab-b1", connected=False, error="refused")
    fleet.vms = [v for v in fleet.vms if v.server != "lab-b1"]
    model.apply(fleet.snapshot())
    fleet.vm("new-1", "lab-a1", folder="/A/B/C")
    model.apply(fleet.snapshot())
    model.apply(standard_fleet().snapshot())
    qtmodeltester.check(model)


def test_updates_are_incremental_and_keep_selection_and_expansion(
    fake: FakeEngine, pane: ResourcesPane, qtmodeltester: Any,
) -> None:
    qtmodeltester.check(pane.proxy)
    model, tree = pane.models[INFRASTRUCTURE], pane.tree
    signals: list[str] = []
    model.modelReset.connect(lambda: signals.append("reset"))
    model.layoutChanged.connect(lambda: signals.append("layout"))
    model.rowsRemoved.connect(lambda *a: signals.append("removed"))
    model.rowsInserted.connect(lambda *a: signals.append("inserted"))
    changed: list[Any] = []
    model.dataChanged.connect(lambda a, b, *r: changed.append(a.data(KeyRole)))
    app = vm_key("app-1", "lab-b1")
    assert pane.select(app)
    tree.collapse(pane.index_of(("server", "lab-a2")))

    change(fake.fleet, "web-1", server="lab-a2")  # web-1 migrated to lab-a2
    fake.push()

    assert signals == ["removed", "inserted"]
    assert pane.models[INFRASTRUCTURE].keys(("server", "lab-a2"))[-1] == vm_key("web-1",
                                                                                 "lab-a2")
    assert vm_key("web-1", "lab-a1") not in model.keys(("server", "lab-a1"))
    assert pane.selected_keys() == [app]
    assert not tree.isExpanded(pane.index_of(("server", "lab-a2")))
    assert tree.isExpanded(pane.index_of(("server", "lab-a1")))

    signals.clear()
    change(fake.fleet, "app-1", state=VmState.PAUSED)
    fake.push()
    assert signals == [] and changed == [app]  # one row changed, nothing else touched
    assert pane.selected_keys() == [app]


def test_a_selected_vm_stays_selected_when_it_moves(fake: FakeEngine,
                                                    pane: ResourcesPane) -> None:
    pane.select(vm_key("web-1", "lab-a1"))
    change(fake.fleet, "web-1", server="lab-b1")
    fake.push()
    assert pane.selected_keys() == [vm_key("web-1", "lab-b1")]
    assert pane.current_key() == vm_key("web-1", "lab-b1")


def test_search_filters_live_and_keeps_ancestors(pane: ResourcesPane) -> None:
    pane.search.setText("WEB")
    assert shown(pane.proxy) == ["XenCenter Lite", "  Production", "    lab-a1", "      web-1"]
    pane.search.setText("storage")
    assert "    Shared storage" in shown(pane.proxy) and "      db-1" not in shown(pane.proxy)
    pane.set_view(FOLDERS)
    pane.search.setText("app")
    assert shown(pane.proxy) == ["(no folder)", "  app-1"]
    pane.search.clear()
    assert len(shown(pane.proxy)) == 12


def test_clearing_the_search_restores_the_tree_the_operator_had(pane: ResourcesPane) -> None:
    web, app = vm_key("web-1", "lab-a1"), vm_key("app-1", "lab-b1")
    pane.tree.collapse(pane.index_of(("server", "lab-a2")))
    pane.tree.collapse(pane.index_of(("server", "lab-b1")))
    assert pane.select(web)
    pane.search.setText("build")  # build-1 is under the collapsed lab-a2: shown open
    assert pane.tree.isExpanded(pane.index_of(("server", "lab-a2")))
    assert pane.selected_keys() == []  # web-1 is filtered out
    pane.search.clear()
    assert not pane.tree.isExpanded(pane.index_of(("server", "lab-a2")))
    assert not pane.tree.isExpanded(pane.index_of(("server", "lab-b1")))
    assert pane.tree.isExpanded(pane.index_of(("server", "lab-a1")))
    assert pane.tree.isExpanded(pane.index_of(("pool", "Production")))
    assert pane.selected_keys() == [web] and pane.current_key() == web
    # Something chosen among the results stays chosen, shown where it is.
    pane.search.setText("app")
    assert pane.select(app)
    pane.search.setText("")
    assert pane.selected_keys() == [app] and pane.current_key() == app
    assert pane.tree.isExpanded(pane.index_of(("server", "lab-b1")))  # opened to show it
    assert not pane.tree.isExpanded(pane.index_of(("server", "lab-a2")))


def test_the_selection_follows_to_the_other_view(pane: ResourcesPane) -> None:
    web, pool = vm_key("web-1", "lab-a1"), ("pool", "Production")
    assert pane.select(web) and pane.select(pool, add=True, make_current=False)
    pane.set_view(FOLDERS)  # the VM is in both views, the pool only in Infrastructure
    assert pane.selected_keys() == [web] and pane.current_key() == web
    pane.set_view(INFRASTRUCTURE)
    assert pane.selected_keys() == [web] and pane.current_key() == web


def test_view_selector_and_set_view_stay_in_step(pane: ResourcesPane) -> None:
    seen: list[str] = []
    pane.viewChanged.connect(seen.append)
    pane.view_selector.setCurrentIndex(pane.view_selector.findData(FOLDERS))
    assert pane.mode == FOLDERS and pane.proxy.sourceModel() is pane.models[FOLDERS]
    assert pane.new_folder_button.isVisibleTo(pane)
    pane.set_view(INFRASTRUCTURE)
    assert pane.view_selector.currentText() == "Infrastructure"
    assert seen == [FOLDERS, INFRASTRUCTURE]


def test_new_folder_stays_and_rename_rewrites_vm_folders(
    fake: FakeEngine, pane: ResourcesPane, run: Any, qtbot: Any,
) -> None:
    pane.set_view(FOLDERS)
    pane.select(("folder", "/Web"))
    dialog = pane.new_folder()
    assert "/Web" in dialog.labelText()
    dialog.setTextValue("Frontend")
    dialog.accept()
    assert pane.current_key() == ("folder", "/Web/Frontend")
    fake.push()  # an unrelated update does not drop the empty folder
    assert ("folder", "/Web/Frontend") in pane.model.keys(("folder", "/Web"))

    run(pane.move_to_folder([("lab-b1", "uuid-app-1")], "/Web/Frontend"))
    assert pane.model.keys(("folder", "/Web/Frontend")) == [vm_key("app-1", "lab-b1")]

    pane.select(("folder", "/Web"))
    rename = pane.rename_folder()
    assert rename is not None
    rename.setTextValue("Public")
    rename.accept()
    run(until(lambda: pane.current_key() == ("folder", "/Public")))
    folders = {v.name: v.folder for v in fake.snapshot().vms}
    assert folders["web-1"] == "/Public" and folders["app-1"] == "/Public/Frontend"
    assert folders["db-1"] == "/Databases/Prod"
    assert pane.index_of(("folder", "/Web")).isValid() is False
    assert fake.folders() >= {"/Public", "/Public/Frontend"}
    assert not any(f.startswith("/Web") for f in fake.folders())


def test_a_folder_stays_when_its_last_vm_leaves_and_in_the_next_console(
    fake: FakeEngine, pane: ResourcesPane, run: Any, qtbot: Any,
) -> None:
    pane.set_view(FOLDERS)
    run(pane.move_to_folder([vm_key("web-1", "lab-a1")[1]], ""))  # /Web's only VM leaves
    assert pane.index_of(("folder", "/Web")).isValid()
    assert pane.model.keys(("folder", "/Web")) == []
    # Another console of the same inventory (the same state directory) shows it too.
    later = ResourcesPane(fake)  # type: ignore[arg-type]
    qtbot.addWidget(later)
    later.set_view(FOLDERS)
    assert later.index_of(("folder", "/Web")).isValid()


def test_delete_folder_asks_then_moves_its_vms_to_no_folder(
    fake: FakeEngine, pane: ResourcesPane, run: Any,
) -> None:
    pane.set_view(FOLDERS)
    pane.select(("folder", "/Databases"))
    menu = pane.context_menu(("folder", "/Databases"))
    delete = next(a for a in menu.actions() if a.text() == "Delete Folder…")
    assert delete.isEnabled()
    box = pane.delete_folder()
    assert box is not None and box.defaultButton() is box.button(QMessageBox.StandardButton.No)
    assert "/Databases" in box.text() and "1 VM(s) in them (db-1)" in box.text()
    box.button(QMessageBox.StandardButton.No).click()
    assert pane.index_of(("folder", "/Databases/Prod")).isValid()

    box = pane.delete_folder()
    assert box is not None
    box.button(QMessageBox.StandardButton.Yes).click()
    run(until(lambda: not pane.index_of(("folder", "/Databases")).isValid()))
    assert not pane.index_of(("folder", "/Databases/Prod")).isValid()
    assert vm_key("db-1", "lab-a1") in pane.model.keys(NO_FOLDER)
    assert not any(f.startswith("/Databases") for f in fake.folders())
    assert pane.index_of(("folder", "/Web")).isValid()  # the others stay


def test_bad_folder_names_are_refused(pane: ResourcesPane, qtbot: Any) -> None:
    with qtbot.waitSignal(pane.message) as blocker:
        assert pane.create_folder("a/b") is None
    assert "'/'" in blocker.args[0]
    assert pane.create_folder("  ") is None


def test_memory_is_shown_in_tooltips(pane: ResourcesPane) -> None:
    tip = pane.index_of(vm_key("web-1", "lab-a1")).data(3)  # ToolTipRole
    assert "web-1 (running) on lab-a1" in tip and "1 vCPU" in tip


# ---- the real lab ---------------------------------------------------------------------------
@pytest.mark.lab
def test_real_lab_tree_follows_the_engine(qtbot: Any, engine: Any, run: Any,
                                          qtmodeltester: Any) -> None:
    pane = ResourcesPane(engine)
    qtbot.addWidget(pane)
    qtmodeltester.check(pane.models[INFRASTRUCTURE])
    qtmodeltester.check(pane.models[FOLDERS])
    for name in ("web-1", "db-1", "app-1", "build-1"):
        vm = vm_named(engine, name)
        parent = pane.proxy.parent(pane.index_of(("vm", vm.key)))
        assert parent.data(KeyRole) == ("server", vm.server)
    pane.set_view(FOLDERS)
    web = vm_named(engine, "web-1")
    assert pane.proxy.parent(pane.index_of(("vm", web.key))).data(KeyRole) == ("folder", "/Web")
    assert ("vm", vm_named(engine, "app-1").key) in pane.model.keys(NO_FOLDER)
    run(engine.refresh())  # a fresh reading changes nothing visible: rows stay
    assert pane.index_of(("vm", web.key)).isValid()


def test_a_server_in_maintenance_mode_says_so_with_its_own_icon(pane: ResourcesPane,
                                                                fake: FakeEngine) -> None:
    from xencenter_lite.ui.icons import icon

    fake.fleet.server("lab-b1", maintenance=True)
    fake.push()
    assert "  lab-b1 (Maintenance Mode)" in shown(pane.proxy)
    model = pane.proxy
    (index,) = model.match(model.index(0, 0), Qt.ItemDataRole.DisplayRole,
                           "lab-b1 (Maintenance Mode)", 1, Qt.MatchFlag.MatchRecursive)
    painted = index.data(Qt.ItemDataRole.DecorationRole)
    assert painted.cacheKey() == icon("server-maintenance").cacheKey()
    assert painted.cacheKey() != icon("server").cacheKey()
    assert "in maintenance mode" in index.data(Qt.ItemDataRole.ToolTipRole)


def test_the_keyboard_opens_the_current_rows_menu_at_that_row(
        pane: ResourcesPane, qtbot: Any) -> None:
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QContextMenuEvent
    from PySide6.QtWidgets import QApplication

    asked: list[str] = []

    def vm_menu(menu: Any) -> None:
        asked.append("vm")
        menu.addAction("Migrate to Server")

    pane.vm_menu_hook = vm_menu
    pane.show()
    qtbot.waitExposed(pane)
    assert pane.select(vm_key("web-1", "lab-a1"))
    tree = pane.tree
    rect = tree.visualRect(tree.currentIndex())
    # Shift+F10 / the Menu key: Qt gives a keyboard context-menu event with the pointer's
    # position, which may be over another row or none.
    event = QContextMenuEvent(QContextMenuEvent.Reason.Keyboard, QPoint(1, 1),
                              tree.mapToGlobal(QPoint(1, 1)))
    QApplication.sendEvent(tree, event)
    menu = QApplication.activePopupWidget()
    assert asked and menu is not None
    assert menu.actions()[0].text() == "Migrate to Server"
    assert abs(menu.pos().y() - tree.viewport().mapToGlobal(rect.bottomLeft()).y()) <= 2
    menu.close()
