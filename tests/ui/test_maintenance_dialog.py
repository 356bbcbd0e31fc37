"""Server ▸ Enter Maintenance Mode… on the lab: the plan per VM, the operator's own choice,
the server marked in the tree and refused by Migrate to Server, and Exit."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox

from tests.conftest import until
from tests.labtools import vm_named
from xencenter_lite.ui.main_window import MainWindow
from xencenter_lite.ui.maintenance import LEAVE, MaintenanceDialog

pytestmark = pytest.mark.lab


def test_the_operator_sees_the_plan_changes_it_and_the_server_enters_and_leaves(
        qtbot: Any, run: Any, engine: Any) -> None:
    window = MainWindow(engine)
    qtbot.addWidget(window)
    app = vm_named(engine, "app-1")
    server = app.server
    window.resources.select(("server", server))
    assert window.enter_maintenance_action.isEnabled()
    assert not window.exit_maintenance_action.isEnabled()

    dialog = window.open_enter_maintenance()
    assert isinstance(dialog, MaintenanceDialog)
    run(until(lambda: dialog.pending == 0 and dialog.rows))
    row = next(i for i in range(dialog.table.rowCount())
               if dialog.table.item(i, 0).text() == "app-1")
    combo = dialog.table.cellWidget(row, 1)
    assert isinstance(combo, QComboBox)
    assert combo.currentData() not in (None, server)  # placement's pick, another server
    assert dialog.table.item(row, 2).text().startswith("Best server: ")
    assert dialog.start.isEnabled()
    assert dialog.parallel.value() == 3 and dialog.parallel.maximum() == engine.concurrency

    # The operator leaves every running VM where it is: nothing will move.
    for i in range(dialog.table.rowCount()):
        c = dialog.table.cellWidget(i, 1)
        if isinstance(c, QComboBox):
            c.setCurrentIndex(c.findText(LEAVE))
            run(until(lambda: dialog.pending == 0))
    assert all(not r.moves for r in dialog.rows)
    assert dialog.table.item(row, 2).text() == "Left on the server by the operator"
    assert dialog.start.isEnabled()
    dialog.start.click()
    assert dialog.jobs == []
    try:
        run(until(lambda: engine.in_maintenance(server)))
        run(until(lambda: window.exit_maintenance_action.isEnabled()))
        assert not window.enter_maintenance_action.isEnabled()
        assert where_labelled(window, server) == f"{server} (Maintenance Mode)"
        # another VM is now refused there
        other = next(v for v in engine.snapshot().vms
                     if v.server != server and v.is_running)
        window.resources.select(("vm", other.key))
        window.migrate_menu.refresh()
        run(until(lambda: window.migrate_menu.pending == 0))
        assert (f"{server} (Maintenance Mode)", False) in window.migrate_menu.entries()
    finally:
        run(engine.exit_maintenance(server, bring_back=False))
    assert not engine.in_maintenance(server)
    assert vm_named(engine, "app-1").server == server


def where_labelled(window: MainWindow, server: str) -> str:
    """The text of the server's row in the Resources tree."""
    model = window.resources.tree.model()
    flags = Qt.MatchFlag.MatchWildcard | Qt.MatchFlag.MatchRecursive
    matches = model.match(model.index(0, 0), Qt.ItemDataRole.DisplayRole, f"{server}*", -1,
                          flags)
    return str(matches[0].data()) if matches else ""
