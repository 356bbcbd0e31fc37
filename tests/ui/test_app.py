"""The main window on the real lab: layout, menus, actions enabled only when they apply,
title, status bar; Add Server; and the console started the way an operator starts it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QLineEdit,
    QMenu,
    QMessageBox,
    QTreeView,
    QWidget,
)

from tests.conftest import until
from tests.labtools import cli, vm_named
from tests.ui.fakes import FakeEngine, lab_fleet
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.jobs import Job, JobKind, JobState
from xencenter_lite.core.plan import MigrationRequest
from xencenter_lite.engine import Engine
from xencenter_lite.ui.add_server import AddServerError, append_server
from xencenter_lite.ui.main_window import MainWindow
from xencenter_lite.ui.resources import FOLDERS, INFRASTRUCTURE

pytestmark = pytest.mark.lab


@pytest.fixture
def window(qtbot: Any, engine: Engine) -> MainWindow:
    win = MainWindow(engine)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def menu_texts(menu: QMenu) -> list[str]:
    return [a.text().replace("&", "") for a in menu.actions() if not a.isSeparator()]


def test_layout_names_and_menus(window: MainWindow) -> None:
    # Found by object name; read out by a screen reader in words.
    for name, kind, words in (("resourcesTree", QTreeView, "Resources tree"),
                              ("viewSelector", QComboBox, "Resources view"),
                              ("searchBox", QLineEdit, "Search resources"),
                              ("eventsView", QWidget, "Events")):
        widget = window.findChild(kind, name)
        assert widget is not None, name
        assert widget.accessibleName() == words
    assert "Shift+F10" in window.findChild(QTreeView, "resourcesTree").accessibleDescription()
    assert window.objectName() == "mainWindow" and window.accessibleName() == "XenCenter Lite"
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    assert list(menus) == ["File", "View", "Pool", "Server", "VM", "Storage", "Help"]
    assert menu_texts(menus["Pool"]) == ["Properties…"]
    assert menu_texts(menus["Storage"]) == ["Set as Default SR", "Move Virtual Disk…"]
    assert menu_texts(menus["File"]) == ["Add Server…", "Exit"]
    assert menu_texts(menus["Server"]) == ["Add Server…", "Connect", "Disconnect", "Reconnect",
                                           "Remove from Inventory…", "Enter Maintenance Mode…",
                                           "Exit Maintenance Mode"]
    assert menu_texts(menus["View"]) == ["Infrastructure", "Folder View"]
    assert menu_texts(menus["VM"]) == ["Start", "Start on Server", "Shut Down",
                                       "Force Shut Down", "Reboot", "Suspend", "Resume",
                                       "Migrate to Server", "Migrate VM…",
                                       "Move Virtual Disk…", "Copy VM…", "Memory…"]
    assert menu_texts(menus["Help"]) == ["About XenCenter Lite"]
    toolbar = [a.text().replace("&", "") for a in window.findChild(QWidget, "mainToolbar")
               .actions() if not a.isSeparator()]
    assert toolbar == ["Add Server…", "Migrate VM…", "Move Virtual Disk…", "Start",
                       "Shut Down", "Reboot", "Suspend", "Resume"]


def test_view_menu_and_selector_stay_in_step(window: MainWindow) -> None:
    folder_action = window.view_actions[FOLDERS]
    assert folder_action.isCheckable() and folder_action.actionGroup().isExclusive()
    folder_action.trigger()
    assert window.resources.view_selector.currentText() == "Folder View"
    window.resources.view_selector.setCurrentIndex(0)
    assert window.view_actions[INFRASTRUCTURE].isChecked() and not folder_action.isChecked()


def test_title_and_actions_follow_the_selection(window: MainWindow, engine: Engine) -> None:
    pane = window.resources
    assert window.windowTitle() == "XenCenter Lite"
    assert not window.migrate_action.isEnabled() and not window.move_disk_action.isEnabled()

    web, app, build = (vm_named(engine, n) for n in ("web-1", "app-1", "build-1"))
    pane.select(("vm", web.key))
    assert window.windowTitle() == "XenCenter Lite - web-1"
    assert window.properties.general.value("Name") == "web-1"
    assert window.migrate_action.isEnabled() and window.move_disk_action.isEnabled()

    pane.select(("vm", app.key), add=True)
    assert window.migrate_action.isEnabled() and not window.move_disk_action.isEnabled()
    assert window.windowTitle() == "XenCenter Lite - 2 items"

    pane.select(("vm", build.key))  # halted: moves with its disks
    assert window.migrate_action.isEnabled() and window.move_disk_action.isEnabled()
    assert window.migrate_menu.isEnabled()

    pane.select(("server", "lab-b1"))
    assert window.windowTitle() == "XenCenter Lite - lab-b1"
    assert not window.migrate_action.isEnabled() and not window.move_disk_action.isEnabled()
    pane.select(("pool", "Production"))
    assert window.windowTitle() == "XenCenter Lite - Production"


def test_vm_context_menu_and_real_wizard(window: MainWindow, engine: Engine, qtbot: Any) -> None:
    db = vm_named(engine, "db-1")
    window.resources.select(("vm", db.key))
    menu = window.resources.context_menu(("vm", db.key))
    assert menu_texts(menu) == ["Migrate to Server", "Migrate VM…", "Move Virtual Disk…",
                                "Memory…", "Shut Down", "Force Shut Down", "Reboot", "Suspend"]
    wizard = window.open_migrate_wizard()
    assert wizard is not None and wizard.isVisible() and wizard.parent() is window
    assert wizard.vm_keys == [db.key]  # type: ignore[attr-defined]
    wizard.reject()


def test_errors_are_logged_and_shown_without_blocking(qtbot: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from xencenter_lite.ui import app

    try:
        raise ValueError("boom")
    except ValueError as exc:
        app._excepthook(ValueError, exc, exc.__traceback__)
    box = next(w for w in QApplication.topLevelWidgets() if w.objectName() == "errorDialog")
    qtbot.addWidget(box)
    assert box.isVisible() and not box.isModal() and "ValueError: boom" in box.text()
    assert "boom" in caplog.text


def test_status_bar_shows_the_latest_job_and_counts_failures(
    window: MainWindow, engine: Engine, run: Any,
) -> None:
    web = vm_named(engine, "web-1")
    (job,) = engine.migrate([MigrationRequest(web.key, web.server)])  # refused by its check
    run(until(lambda: job.state.finished))
    assert job.state is JobState.FAILED
    failed = sum(1 for j in engine.jobs if j.state is JobState.FAILED)
    label = window.findChild(QWidget, "failedJobs")
    assert label.isVisible() and label.text() == f"{failed} failed"
    assert window.job_label.text() == f"Migrating 'web-1' to '{web.server}': Failed"


def test_closing_with_running_jobs_asks_then_cancels_them(qtbot: Any, run: Any, qapp: Any,
                                                          request: Any) -> None:
    qapp.setQuitOnLastWindowClosed(False)  # as run_gui does: the loop must outlive the window
    request.addfinalizer(lambda: qapp.setQuitOnLastWindowClosed(True))
    fake = FakeEngine(lab_fleet())
    win = MainWindow(fake)  # type: ignore[arg-type]
    qtbot.addWidget(win)
    win.show()
    job = Job(JobKind.MIGRATE, "Migrating 'web-1' to 'lab-a2'", ("lab-a1", "uuid-web-1"),
              "web-1", "lab-a1", "lab-a2")
    fake.push_job(job)
    closed: list[bool] = []
    win.closed.connect(lambda: closed.append(True))
    assert not win.close()  # refused for now: the operator is asked first
    box = win.findChild(QMessageBox, "confirmExit")
    assert "1 migration(s)" in box.text()
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.No)
    box.button(QMessageBox.StandardButton.Yes).click()
    run(until(lambda: bool(closed)))
    assert job.state is JobState.CANCELLED and not win.isVisible()


def test_add_server_refuses_bad_input_and_writes_nothing(
    window: MainWindow, engine: Engine, tmp_path: Path,
) -> None:
    path = Path(engine.inventory.path)
    before = path.read_text()
    dialog = window.add_server()
    dialog.name.setText("lab-z9")
    dialog.uri.setText("http://example.org/")
    dialog.accept()
    assert dialog.isVisible() and dialog.error.text().startswith("URI: ")
    dialog.name.setText("lab-a1")
    dialog.uri.setText("qemu+ssh://root@z9/system")
    dialog.accept()
    assert dialog.error.text().startswith("Name: a server named 'lab-a1'")
    dialog.name.setText("lab-z9")
    dialog.addresses["storage"].setText("10.0.0.1 10.0.0.2")
    dialog.accept()
    assert dialog.error.text().startswith("Address on 'storage': ")
    assert path.read_text() == before
    dialog.reject()


def test_append_server_keeps_the_file_and_joins_a_pool(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(textwrap.dedent("""\
        # my fleet
        management_network = "management"

        [networks.management]
        rate_mib_s = 25

        [[servers]]
        name = "a"
        uri = "qemu:///system"

        [[pools]]
        name = "P"
        members = [
            "a",
        ]
        """))
    inventory = append_server(path, "b", "qemu+ssh://root@b/system",
                              {"management": "192.0.2.2"}, "P")
    assert inventory.pool_of("b") is not None and inventory.pool_of("b").members == ("a", "b")
    assert path.read_text().startswith("# my fleet\n")
    assert load_inventory(path).server("b").networks == {"management": "192.0.2.2"}
    before = path.read_text()
    with pytest.raises(AddServerError, match=r"^Pool: "):
        append_server(path, "c", "qemu:///system", {}, "Nope")
    assert path.read_text() == before


@contextlib.contextmanager
def _console_with_lab_b1(qtbot: Any, run: Any, lab_inventory: Path,
                         tmp_path: Path) -> Iterator[tuple[Engine, MainWindow, Path]]:
    """A console of its own over an inventory of lab-b1 alone."""
    b1 = load_inventory(lab_inventory).server("lab-b1")
    assert b1 is not None
    path = tmp_path / "inventory.toml"
    path.write_text(textwrap.dedent(f"""\
        [[servers]]
        name = "lab-b1"
        uri = "{b1.uri}"
        """))
    own = Engine(load_inventory(path))
    run(own.start(watch=False))
    try:
        win = MainWindow(own)
        qtbot.addWidget(win)
        yield own, win, path
    finally:
        run(own.close())


def test_add_server_connects_the_new_server(qtbot: Any, run: Any, lab_inventory: Path,
                                            tmp_path: Path) -> None:
    a1 = load_inventory(lab_inventory).server("lab-a1")
    assert a1 is not None
    with _console_with_lab_b1(qtbot, run, lab_inventory, tmp_path) as (own, win, path):
        dialog = win.add_server()
        dialog.name.setText("lab-a1")
        dialog.uri.setText(a1.uri)
        dialog.accept()
        assert dialog.error.text() == ""
        run(until(lambda: own.snapshot().servers.get("lab-a1") is not None
                  and own.snapshot().servers["lab-a1"].connected))
        assert load_inventory(path).server("lab-a1") is not None
        # Its SRs (and whatever VMs it runs now) appear in the tree under it.
        snap = own.snapshot()
        local = [sr for sr in snap.srs_on("lab-a1") if not sr.shared]
        assert local and all(win.resources.index_of(("sr", (sr.server, sr.uuid))).isValid()
                             for sr in local)
        assert win.resources.index_of(("server", "lab-a1")).isValid()
        assert all(win.resources.index_of(("vm", v.key)).isValid()
                   for v in snap.vms_on("lab-a1"))


def test_add_server_refuses_a_server_already_there_under_another_name(
        qtbot: Any, run: Any, lab_inventory: Path, tmp_path: Path) -> None:
    """It connects before it writes, and asks the host what it is: the same host under
    another name (here the same socket written another way) is refused, naming the entry
    it duplicates; one that cannot be reached is said so, and added only on a second OK."""
    b1 = load_inventory(lab_inventory).server("lab-b1")
    assert b1 is not None
    with _console_with_lab_b1(qtbot, run, lab_inventory, tmp_path) as (own, win, path):
        before = path.read_text()
        dialog = win.add_server()
        dialog.name.setText("lab-b1-again")
        dialog.uri.setText(b1.uri.replace("/run/libvirt-sock", "/run/./libvirt-sock"))
        dialog.accept()
        run(until(lambda: dialog.error.text() != ""))
        assert dialog.error.text().startswith("URI: this is the server 'lab-b1' (host UUID ")
        assert path.read_text() == before and dialog.isVisible()

        dialog.name.setText("lab-z9")
        dialog.uri.setText("qemu+unix:///system?socket=/nonexistent/libvirt-sock")
        dialog.accept()
        run(until(lambda: "cannot connect" in dialog.error.text()))
        assert "press OK again to add it anyway" in dialog.error.text()
        assert path.read_text() == before
        dialog.accept()  # the operator insists: added, shown disconnected
        run(until(lambda: "lab-z9" in own.snapshot().servers))
        assert load_inventory(path).server("lab-z9") is not None
        assert not own.snapshot().servers["lab-z9"].connected


def test_console_starts_and_stops_with_the_window(lab_inventory: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        from xencenter_lite.ui import app

        def close():
            (win,) = [w for w in QApplication.topLevelWidgets()
                      if w.objectName() == "mainWindow"]
            servers = win.engine.snapshot().servers.values()
            print("connected", sum(s.connected for s in servers), flush=True)
            win.close()

        qapp = QApplication([])  # first, so the timer has a loop to run on
        QTimer.singleShot(4000, close)
        sys.exit(app.run_gui({str(lab_inventory)!r}))
        """)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "connected 3" in done.stdout


def test_without_a_display_the_command_says_so(lab_inventory: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    done = subprocess.run([sys.executable, "-m", "xencenter_lite.cli", "--inventory",
                           str(lab_inventory)], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "no display" in done.stderr


def test_a_bad_inventory_still_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("servers = 3\n")
    done = cli(inventory=bad)
    assert done.returncode == 2
    assert "bad.toml" in done.stderr and "servers" in done.stderr
