"""Server ▸ Connect, Disconnect, Reconnect and Remove from Inventory in the console: the menu
offers what applies to the selected server, Remove asks first (No by default) and takes the
server out of the inventory file only on Yes, and a job on the server keeps it connected
and listed. (The engine's side runs on libvirt's test driver: tests/faults/test_servers.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication, QComboBox, QDialog, QMenu, QMessageBox

from tests.conftest import until
from tests.ui.fakes import FakeEngine, lab_fleet
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.jobs import Job, JobKind
from xencenter_lite.ui.main_window import MainWindow
from xencenter_lite.ui.wizard import ADD_SERVER

INVENTORY = """# the lab, by hand
[[servers]]
name = "lab-a1"
uri = "qemu+ssh://root@lab-a1/system"

[[servers]]
name = "lab-a2"
uri = "qemu+ssh://root@lab-a2/system"

[[servers]]
name = "lab-b1"
uri = "qemu+ssh://root@lab-b1/system"

[[pools]]
name = "Production"
members = ["lab-a1", "lab-a2"]
"""


@pytest.fixture(autouse=True)
def keep_the_loop(qapp: Any, request: pytest.FixtureRequest) -> None:
    """As run_gui does: closing the last window (a message box, here) must not stop the loop."""
    qapp.setQuitOnLastWindowClosed(False)
    request.addfinalizer(lambda: qapp.setQuitOnLastWindowClosed(True))


@pytest.fixture
def window(qtbot: Any, tmp_path: Path) -> MainWindow:
    path = tmp_path / "inventory.toml"
    path.write_text(INVENTORY)
    fake = FakeEngine(lab_fleet())
    fake.inventory = load_inventory(path)
    win = MainWindow(fake)  # type: ignore[arg-type]
    qtbot.addWidget(win)
    win.show()
    return win


def fake_of(win: MainWindow) -> FakeEngine:
    assert isinstance(win.engine, FakeEngine)
    return win.engine


def offered(win: MainWindow, server: str) -> list[str]:
    assert win.select(("server", server))
    menu: QMenu = win.resources.context_menu(("server", server))
    return [a.text().replace("&", "") for a in menu.actions() if not a.isSeparator()]


def test_the_menu_offers_what_applies_to_the_server(window: MainWindow, run: Any) -> None:
    fake = fake_of(window)
    assert offered(window, "lab-a1")[:3] == ["Disconnect", "Reconnect",
                                             "Remove from Inventory…"]
    window.disconnect_action.trigger()
    run(until(lambda: fake.snapshot().servers["lab-a1"].held))
    assert offered(window, "lab-a1")[:2] == ["Connect", "Remove from Inventory…"]
    window.connect_action.trigger()
    run(until(lambda: fake.snapshot().servers["lab-a1"].connected))
    assert "Disconnect" in offered(window, "lab-a1")
    # The Server menu has them all, enabled as they apply.
    assert not window.connect_action.isEnabled() and window.disconnect_action.isEnabled()


def test_a_job_keeps_its_server_connected_and_listed(window: MainWindow, run: Any) -> None:
    fake = fake_of(window)
    job = Job(JobKind.MIGRATE, "Migrating 'web-1' to 'lab-a2'", ("lab-a1", "uuid-web-1"),
              "web-1", "lab-a1", "lab-a2")
    fake.push_job(job)
    assert offered(window, "lab-a2") == ["Remove from Inventory…", "Enter Maintenance Mode…",
                                         "Exit Maintenance Mode"]
    box = window.remove_server()
    assert box is not None and box.objectName() == "removeServerRefused"
    assert "Migrating 'web-1' to 'lab-a2'" in box.text()
    box.button(QMessageBox.StandardButton.Ok).click()
    assert fake.removed == [] and "lab-a2" in Path(fake.inventory.path).read_text()
    job.cancelled()
    fake.push_job(job)


def test_remove_asks_first_then_takes_the_server_out_of_the_file(
        window: MainWindow, run: Any) -> None:
    fake = fake_of(window)
    path = Path(fake.inventory.path)
    window.select(("server", "lab-a2"))
    box = window.remove_server()
    assert box is not None and box.objectName() == "confirmRemoveServer"
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.No)
    box.button(QMessageBox.StandardButton.No).click()
    assert path.read_text() == INVENTORY and fake.removed == []

    box = window.remove_server()
    assert box is not None
    box.button(QMessageBox.StandardButton.Yes).click()
    run(until(lambda: fake.removed == ["lab-a2"]))
    after = load_inventory(path)
    assert [s.name for s in after.servers] == ["lab-a1", "lab-b1"]
    assert after.pools[0].members == ("lab-a1",)
    assert path.read_text().startswith("# the lab, by hand\n")
    assert "removed from the inventory" in window.statusBar().currentMessage()


def test_removing_a_pools_last_server_says_the_pool_goes_too(window: MainWindow) -> None:
    path = Path(fake_of(window).inventory.path)
    path.write_text(INVENTORY.replace('members = ["lab-a1", "lab-a2"]', 'members = ["lab-a1"]'))
    fake_of(window).inventory = load_inventory(path)
    window.select(("server", "lab-a1"))
    box = window.remove_server()
    assert box is not None and "Pool 'Production' has no other server" in box.text()
    box.button(QMessageBox.StandardButton.No).click()


def test_at_1024_by_640_every_events_button_is_in_view(window: MainWindow, qtbot: Any) -> None:
    window.resize(1024, 640)
    job = Job(JobKind.MIGRATE, "Migrating 'web-1' to 'lab-a2' with a long enough title",
              ("lab-a1", "uuid-web-1"), "web-1", "lab-a1", "lab-a2")
    fake_of(window).push_job(job)
    tree = window.events.tree
    qtbot.waitUntil(lambda: window.events.buttons.get(job.id) is not None)
    button = window.events.buttons[job.id]
    qtbot.waitUntil(button.isVisible)
    right = button.mapTo(tree.viewport(), button.rect().topRight()).x()
    assert 0 < right <= tree.viewport().width(), (right, tree.viewport().width())
    job.cancelled()  # (a running job would make closing the window ask first)
    fake_of(window).push_job(job)


def test_add_server_from_the_wizard_belongs_to_it_and_gives_it_the_focus_back(
        window: MainWindow, qtbot: Any) -> None:
    window.select(("vm", ("lab-a1", "uuid-web-1")))
    wizard = window.open_migrate_wizard()
    assert wizard is not None
    qtbot.waitExposed(wizard)
    combo = wizard.findChild(QComboBox, "destinationCombo")
    combo.setCurrentIndex(combo.findText(ADD_SERVER))  # the entry "Add a pool or server…"
    dialog = next(d for d in wizard.findChildren(QDialog, "addServerDialog") if d.isVisible())
    assert dialog.parent() is wizard
    assert combo.currentText() != ADD_SERVER  # the entry is not kept as a destination
    dialog.reject()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is wizard)
    wizard.reject()


def test_a_lost_server_is_said_in_the_status_bar_and_listed_in_events(
        window: MainWindow) -> None:
    fake = fake_of(window)
    event = Job(JobKind.SERVER, "Lost the connection to 'lab-a2'", ("", ""), "", "lab-a2",
                "lab-a2")
    event.fail("'lab-a2': connection lost. The console connects again as soon as it answers")
    fake.server_event(event)
    assert window.statusBar().currentMessage().startswith("'lab-a2': connection lost")
    assert window.events.model.row_of(event.id) is not None
    assert window.failed_label.text() == ""  # an event, not a failed job
