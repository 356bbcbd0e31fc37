"""The console's main window: Resources on the left, the selected object's tabs on the right,
Events at the bottom, XenCenter's menus and toolbar, and a status bar with the latest job.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QWidget,
)

from xencenter_lite.core.commands import (
    Verdict,
    can_copy,
    can_edit_memory,
    can_migrate,
    can_move_disk,
    can_set_default_sr,
    default_sr_owner,
)
from xencenter_lite.core.inventory import InventoryError
from xencenter_lite.core.jobs import Job, JobState
from xencenter_lite.core.model import SR, Snapshot
from xencenter_lite.core.power import PowerAction, check_power
from xencenter_lite.ui.add_server import AddServerDialog, AddServerError, remove_from_inventory
from xencenter_lite.ui.bridge import bridge
from xencenter_lite.ui.common import show_non_modal, spawn, whole_percent
from xencenter_lite.ui.events import EventsView
from xencenter_lite.ui.icons import icon
from xencenter_lite.ui.migrate_menu import MigrateToServerMenu, StartOnServerMenu, open_wizard
from xencenter_lite.ui.pool_storage import PoolPropertiesDialog, make_default
from xencenter_lite.ui.properties import PropertiesView
from xencenter_lite.ui.resources import (
    FOLDERS,
    INFRASTRUCTURE,
    NodeKey,
    ResourcesPane,
    find_object,
    follow_engine,
)

if TYPE_CHECKING:
    from xencenter_lite.engine import Engine

APP_TITLE = "XenCenter Lite"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xencenter-lite")
    except PackageNotFoundError:
        return "(development)"


class MainWindow(QMainWindow):
    closed = Signal()  # the window really closed: the app stops the engine and quits

    def __init__(self, engine: Engine, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setAccessibleName("XenCenter Lite")
        self.engine = engine
        self._really_close = False
        self.resize(1200, 780)

        self.resources = ResourcesPane(engine, self)
        self.properties = PropertiesView(engine, self)
        self.events = EventsView(engine, self)
        self.events.setAccessibleName("Events")
        self.events.setAccessibleDescription("Migrations, disk moves and other jobs, with "
                                             "their progress, Cancel and details")
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.resources)
        top.addWidget(self.properties)
        top.setStretchFactor(1, 1)
        top.setSizes([320, 880])
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.events)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([540, 220])
        self.setCentralWidget(self.splitter)

        self._build_actions()
        self._build_menus()
        self._build_status_bar()

        self.resources.selectionChanged.connect(self._selection_changed)
        self.resources.viewChanged.connect(self._view_changed)
        self.resources.message.connect(self._show_message)
        self.resources.vm_menu_hook = self._vm_context_menu
        self.resources.server_menu_hook = self._server_context_menu
        self.resources.pool_menu_hook = lambda menu: menu.addAction(
            self.pool_properties_action)
        self.resources.sr_menu_hook = lambda menu: menu.addAction(self.set_default_sr_action)
        follow_engine(engine, self._on_snapshot, self._on_job)
        bridge(engine).serverEvent.connect(self._on_server_event)  # lost or back: said at once
        self._selection_changed()
        self._update_jobs()

    # ---- actions and menus --------------------------------------------------------------
    def _build_actions(self) -> None:
        self.add_server_action = QAction(icon("server-connected"), "&Add Server…", self)
        self.add_server_action.setObjectName("addServerAction")
        self.add_server_action.triggered.connect(lambda: self.add_server())
        self.exit_action = QAction("E&xit", self)
        self.exit_action.setShortcut(QKeySequence.StandardKey.Quit)
        self.exit_action.triggered.connect(self.close)
        self.migrate_action = QAction(icon("vm-migrating"), "&Migrate VM…", self)
        self.migrate_action.setObjectName("migrateAction")
        self.migrate_action.setToolTip("Migrate the selected VMs to another server")
        self.migrate_action.triggered.connect(self.open_migrate_wizard)
        self.move_disk_action = QAction(icon("sr"), "Move &Virtual Disk…", self)
        self.move_disk_action.setObjectName("moveDiskAction")
        self.move_disk_action.triggered.connect(self.open_move_disk)
        self.copy_action = QAction("&Copy VM…", self)
        self.copy_action.setObjectName("copyAction")
        self.copy_action.setToolTip("A new halted VM with its own copies of the disks (the VM "
                                    "must be halted)")
        self.copy_action.triggered.connect(self.open_copy)
        self.memory_action = QAction("M&emory…", self)
        self.memory_action.setObjectName("memoryAction")
        self.memory_action.setToolTip("Dynamic Memory Control: the VM's memory range and the "
                                      "memory it has now")
        self.memory_action.triggered.connect(self.open_memory)
        # VM power operations, with XenCenter's shortcuts (Suspend and Resume share Ctrl+Y:
        # whichever the selection allows has it).
        self.power_actions: dict[PowerAction, QAction] = {}
        for act, text, key in ((PowerAction.START, "S&tart", "Ctrl+B"),
                               (PowerAction.SHUTDOWN, "Shut &Down", "Ctrl+E"),
                               (PowerAction.FORCE_SHUTDOWN, "&Force Shut Down", ""),
                               (PowerAction.REBOOT, "&Reboot", "Ctrl+R"),
                               (PowerAction.SUSPEND, "Sus&pend", "Ctrl+Y"),
                               (PowerAction.RESUME, "Res&ume", "")):
            qa = QAction(text, self)
            qa.setObjectName(f"power:{act.value}")
            if key:
                qa.setShortcut(QKeySequence(key))
            qa.triggered.connect(lambda _=False, a=act: self.power(a))
            self.power_actions[act] = qa
        self.connect_action = QAction(icon("server-connected"), "&Connect", self)
        self.connect_action.setObjectName("connectAction")
        self.connect_action.setToolTip("Connect to the selected server now")
        self.connect_action.triggered.connect(self.connect_server)
        self.disconnect_action = QAction("&Disconnect", self)
        self.disconnect_action.setObjectName("disconnectAction")
        self.disconnect_action.setToolTip("Close the connection to the selected server; it "
                                          "stays disconnected until you connect it")
        self.disconnect_action.triggered.connect(self.disconnect_server)
        self.reconnect_action = QAction("Reco&nnect", self)
        self.reconnect_action.setObjectName("reconnectAction")
        self.reconnect_action.setToolTip("Open a new connection to the selected server")
        self.reconnect_action.triggered.connect(self.connect_server)
        self.remove_server_action = QAction("&Remove from Inventory…", self)
        self.remove_server_action.setObjectName("removeServerAction")
        self.remove_server_action.setToolTip("Stop managing the selected server (its VMs "
                                             "keep running)")
        self.remove_server_action.triggered.connect(self.remove_server)
        self.enter_maintenance_action = QAction("Enter &Maintenance Mode…", self)
        self.enter_maintenance_action.setObjectName("enterMaintenanceAction")
        self.enter_maintenance_action.setToolTip("Migrate the server's running VMs to other "
                                                 "servers, then keep VMs off it")
        self.enter_maintenance_action.triggered.connect(self.open_enter_maintenance)
        self.exit_maintenance_action = QAction("E&xit Maintenance Mode", self)
        self.exit_maintenance_action.setObjectName("exitMaintenanceAction")
        self.exit_maintenance_action.triggered.connect(self.open_exit_maintenance)
        self.set_default_sr_action = QAction("Set as &Default SR", self)
        self.set_default_sr_action.setObjectName("setDefaultSrAction")
        self.set_default_sr_action.triggered.connect(self.set_default_sr)
        self.pool_properties_action = QAction("&Properties…", self)
        self.pool_properties_action.setObjectName("poolPropertiesAction")
        self.pool_properties_action.setToolTip("The selected pool's servers and default SR")
        self.pool_properties_action.triggered.connect(self.open_pool_properties)
        self.view_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        group.setExclusive(True)
        for mode, text in ((INFRASTRUCTURE, "&Infrastructure"), (FOLDERS, "&Folder View")):
            action = QAction(text, self, checkable=True)
            action.setChecked(mode == self.resources.mode)
            action.triggered.connect(lambda _=False, m=mode: self.resources.set_view(m))
            group.addAction(action)
            self.view_actions[mode] = action
        self.about_action = QAction("&About XenCenter Lite", self)
        self.about_action.triggered.connect(self.about)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.add_server_action)
        file_menu.addSeparator()
        file_menu.addAction(self.exit_action)
        view_menu = bar.addMenu("&View")
        for action in self.view_actions.values():
            view_menu.addAction(action)
        pool_menu = bar.addMenu("&Pool")  # (XenCenter's order: Pool, Server, VM, Storage)
        pool_menu.addAction(self.pool_properties_action)
        server_menu = bar.addMenu("&Server")
        server_menu.addAction(self.add_server_action)
        server_menu.addSeparator()
        for action in self.server_connection_actions():
            server_menu.addAction(action)
        server_menu.addSeparator()
        server_menu.addAction(self.enter_maintenance_action)
        server_menu.addAction(self.exit_maintenance_action)
        vm_menu = bar.addMenu("V&M")
        self.migrate_menu = MigrateToServerMenu(self.engine, self.resources.selected_vm_keys,
                                                self)
        self.start_on_menu = StartOnServerMenu(self.engine, self.resources.selected_vm_keys,
                                               self)
        for act, qa in self.power_actions.items():
            vm_menu.addAction(qa)
            if act is PowerAction.START:
                vm_menu.addMenu(self.start_on_menu)
        vm_menu.addSeparator()
        vm_menu.addMenu(self.migrate_menu)
        vm_menu.addAction(self.migrate_action)
        vm_menu.addAction(self.move_disk_action)
        vm_menu.addAction(self.copy_action)
        vm_menu.addAction(self.memory_action)
        storage_menu = bar.addMenu("S&torage")
        storage_menu.addAction(self.set_default_sr_action)
        storage_menu.addSeparator()
        storage_menu.addAction(self.move_disk_action)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.about_action)

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setIconSize(QSize(24, 24))
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addAction(self.add_server_action)
        toolbar.addSeparator()
        toolbar.addAction(self.migrate_action)
        toolbar.addAction(self.move_disk_action)
        toolbar.addSeparator()
        for act in (PowerAction.START, PowerAction.SHUTDOWN, PowerAction.REBOOT,
                    PowerAction.SUSPEND, PowerAction.RESUME):
            toolbar.addAction(self.power_actions[act])

    def _vm_context_menu(self, menu: Any) -> None:
        submenu = MigrateToServerMenu(self.engine, self.resources.selected_vm_keys, menu)
        submenu.setEnabled(self.migrate_action.isEnabled())
        menu.addMenu(submenu)
        menu.addAction(self.migrate_action)
        menu.addAction(self.move_disk_action)
        if self.copy_action.isEnabled():  # a halted VM only
            menu.addAction(self.copy_action)
        menu.addAction(self.memory_action)
        menu.addSeparator()
        for act, qa in self.power_actions.items():
            if qa.isEnabled():  # as XenCenter's context menu: only what applies
                menu.addAction(qa)
                if act is PowerAction.START:
                    start_on = StartOnServerMenu(self.engine, self.resources.selected_vm_keys,
                                                 menu)
                    menu.addMenu(start_on)

    def server_connection_actions(self) -> list[QAction]:
        return [self.connect_action, self.disconnect_action, self.reconnect_action,
                self.remove_server_action]

    def _server_context_menu(self, menu: Any, _server: str) -> None:
        for action in self.server_connection_actions():
            if action.isEnabled():  # as XenCenter's context menu: only what applies
                menu.addAction(action)
        menu.addSeparator()
        menu.addAction(self.enter_maintenance_action)
        menu.addAction(self.exit_maintenance_action)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.job_label = QLabel(self)
        self.job_label.setObjectName("jobStatus")
        self.job_progress = QProgressBar(self)
        self.job_progress.setObjectName("jobProgress")
        self.job_progress.setRange(0, 100)
        self.job_progress.setMaximumWidth(140)
        self.job_progress.setMaximumHeight(16)
        self.failed_label = QLabel(self)
        self.failed_label.setObjectName("failedJobs")
        self.failed_label.setStyleSheet("color: #c62828; font-weight: bold")
        bar.addPermanentWidget(self.job_label)
        bar.addPermanentWidget(self.job_progress)
        bar.addPermanentWidget(self.failed_label)

    # ---- reactions ----------------------------------------------------------------------
    def _on_snapshot(self, _snap: Snapshot) -> None:
        self._update_actions()
        self._update_title()

    def _on_job(self, _job: Job) -> None:
        self._update_jobs()
        self._update_actions()

    def _on_server_event(self, event: Job) -> None:
        self.statusBar().showMessage(event.error or event.title, 15000)

    def _selection_changed(self) -> None:
        keys = self.resources.selected_keys()
        current = self.resources.current_key()
        self.properties.show_object(current if current in keys else (keys[0] if keys else None))
        self._update_title()
        self._update_actions()

    def _view_changed(self, mode: str) -> None:
        self.view_actions[mode].setChecked(True)

    def _show_message(self, text: str) -> None:
        if text:
            self.statusBar().showMessage(text, 8000)
        else:
            self.statusBar().clearMessage()

    def _update_title(self) -> None:
        keys = self.resources.selected_keys()
        if len(keys) > 1:
            self.setWindowTitle(f"{APP_TITLE} - {len(keys)} items")
            return
        name = ""
        if keys:
            obj = find_object(self.engine.snapshot(), keys[0])
            name = getattr(obj, "name", None) or self.properties.general.heading.text()
        self.setWindowTitle(f"{APP_TITLE} - {name}" if name else APP_TITLE)

    def _update_actions(self) -> None:
        keys = self.resources.selected_keys()
        snap = self.engine.snapshot()
        # (a row that is not a VM makes the selection one no VM command takes)
        vms = [snap.vm(k[1]) if k[0] == "vm" else None for k in keys]
        only_vms = bool(keys) and all(v is not None for v in vms)
        busy = self.engine.busy
        migrate = can_migrate(snap, vms, busy)
        self._follow(self.migrate_action, migrate)
        self.migrate_menu.setEnabled(migrate.ok)
        self._follow(self.move_disk_action, can_move_disk(snap, vms))
        self._follow(self.memory_action, can_edit_memory(snap, vms))
        self._follow(self.copy_action, can_copy(snap, vms, busy))
        for act, qa in self.power_actions.items():
            qa.setEnabled(only_vms and all(v is not None and not check_power(snap, v, act, busy)
                                           for v in vms))
        self.start_on_menu.setEnabled(self.power_actions[PowerAction.START].isEnabled())
        suspend, resume = (self.power_actions[PowerAction.SUSPEND],
                           self.power_actions[PowerAction.RESUME])
        toggle = QKeySequence("Ctrl+Y")
        suspend.setShortcut(QKeySequence() if resume.isEnabled() else toggle)
        resume.setShortcut(toggle if resume.isEnabled() else QKeySequence())
        server = self.selected_server()
        srv = snap.servers.get(server) if server else None
        self.enter_maintenance_action.setEnabled(srv is not None and srv.connected
                                                 and not srv.maintenance)
        self.exit_maintenance_action.setEnabled(srv is not None and srv.connected
                                                and srv.maintenance)
        in_use = srv is not None and self.engine.server_in_use(srv.name) is not None
        self.connect_action.setEnabled(srv is not None and not srv.connected)
        self.disconnect_action.setEnabled(srv is not None and not srv.held and not in_use)
        self.reconnect_action.setEnabled(srv is not None and srv.connected and not in_use)
        self.remove_server_action.setEnabled(srv is not None)
        self.pool_properties_action.setEnabled(self.selected_pool() is not None)
        sr = self.selected_sr()
        if sr is None:
            self.set_default_sr_action.setEnabled(False)
            self.set_default_sr_action.setToolTip("Select an SR")
        else:
            verdict = can_set_default_sr(snap, sr)
            self.set_default_sr_action.setEnabled(verdict.ok)
            self.set_default_sr_action.setToolTip(
                verdict.reason if not verdict.ok else
                f"Disks go to '{sr.name}' when a migration or a copy to "
                f"{default_sr_owner(snap, sr)} names no SR")

    def _follow(self, action: QAction, verdict: Verdict) -> None:
        """Enable `action` as the core's verdict says; disabled, its tooltip says why."""
        default = action.property("defaultToolTip")
        if default is None:
            default = action.toolTip()
            action.setProperty("defaultToolTip", default)
        action.setEnabled(verdict.ok)
        action.setToolTip(str(default) if verdict.ok else verdict.reason)

    def _selected_one(self, kind: str) -> NodeKey | None:
        """The selection's key when it is one row of this kind."""
        keys = self.resources.selected_keys()
        return keys[0] if len(keys) == 1 and keys[0][0] == kind else None

    def selected_pool(self) -> str | None:
        key = self._selected_one("pool")
        return str(key[1]) if key else None

    def selected_sr(self) -> SR | None:
        key = self._selected_one("sr")
        found = find_object(self.engine.snapshot(), key) if key else None
        return found if isinstance(found, SR) else None

    def set_default_sr(self) -> str | None:
        sr = self.selected_sr()
        if sr is None:
            return None
        _changed, text = make_default(self.engine, sr)
        self.statusBar().showMessage(text, 15000)
        self._update_actions()
        return text

    def open_pool_properties(self) -> QDialog | None:
        pool = self.selected_pool()
        if pool is None or pool not in self.engine.snapshot().pools:
            return None
        dialog = PoolPropertiesDialog(self.engine, pool, self)
        show_non_modal(dialog)
        return dialog

    def selected_server(self) -> str | None:
        key = self._selected_one("server")
        return str(key[1]) if key else None

    def _update_jobs(self) -> None:
        jobs = self.engine.jobs
        failed = sum(1 for j in jobs if j.state is JobState.FAILED)
        self.failed_label.setText(f"{failed} failed" if failed else "")
        self.failed_label.setVisible(bool(failed))
        latest = jobs[-1] if jobs else None
        self.job_label.setVisible(latest is not None)
        self.job_progress.setVisible(latest is not None and not latest.state.finished)
        if latest is None:
            return
        if latest.state.finished:
            outcome = {JobState.DONE: "Completed", JobState.FAILED: "Failed",
                       JobState.CANCELLED: "Cancelled"}[latest.state]
            self.job_label.setText(f"{latest.title}: {outcome}")
        else:
            self.job_label.setText(f"{latest.title}: {whole_percent(latest.percent)} %")
            self.job_progress.setValue(whole_percent(latest.percent))

    # ---- commands -----------------------------------------------------------------------
    def add_server(self, over: QWidget | None = None) -> AddServerDialog:
        """File ▸ Add Server…; `over` (the Migrate VM wizard's "Add a server…") is the window
        the dialog belongs to and gives the focus back to once it is closed."""
        owner = over if over is not None else self
        dialog = AddServerDialog(self.engine, owner)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        if over is not None:
            def back(_result: int) -> None:
                if shiboken6.isValid(over) and over.isVisible():
                    over.raise_()
                    over.activateWindow()
            dialog.finished.connect(back)
        dialog.open()
        return dialog

    def connect_server(self) -> None:
        server = self.selected_server()
        if server is not None:
            self.statusBar().showMessage(f"Connecting to {server}…", 8000)
            spawn(self.engine.reconnect(server))

    def disconnect_server(self) -> None:
        server = self.selected_server()
        if server is None:
            return
        why = self.engine.server_in_use(server)
        if why is not None:
            self.statusBar().showMessage(f"'{server}' cannot be disconnected: {why}", 8000)
            return
        spawn(self.engine.disconnect(server))

    def remove_server(self) -> QMessageBox | None:
        """Confirm, then take the selected server out of the inventory file and the console.
        Refused (saying why) while a job or an earlier job's clean-up needs it."""
        server = self.selected_server()
        if server is None:
            return None
        why = self.engine.removal_refused(server)
        if why is not None:
            box = QMessageBox(QMessageBox.Icon.Warning, "Remove Server",
                              f"'{server}' cannot be removed from the inventory now: {why}.",
                              QMessageBox.StandardButton.Ok, self)
            box.setObjectName("removeServerRefused")
        else:
            pool = self.engine.inventory.pool_of(server)
            text = (f"Remove '{server}' from the inventory ({self.engine.inventory.path})? "
                    "Its VMs keep running; the console stops showing and managing it.")
            if pool is not None and pool.members == (server,):
                text += f" Pool '{pool.name}' has no other server: it is removed too."
            box = QMessageBox(QMessageBox.Icon.Question, "Remove Server", text,
                              QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                              self)
            box.setObjectName("confirmRemoveServer")
            box.setDefaultButton(QMessageBox.StandardButton.No)

            def finished(_r: int) -> None:
                if box.clickedButton() is box.button(QMessageBox.StandardButton.Yes):
                    self._remove_server_now(server)

            box.finished.connect(finished)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return box

    def _remove_server_now(self, server: str) -> None:
        why = self.engine.removal_refused(server)  # a job may have begun since the question
        try:
            if why is not None:
                raise AddServerError(why)
            remove_from_inventory(Path(self.engine.inventory.path), server)
        except (AddServerError, InventoryError, OSError) as exc:
            self.statusBar().showMessage(f"'{server}' was not removed: {exc}", 15000)
            return
        spawn(self.engine.remove_server(server))
        self.statusBar().showMessage(f"'{server}' removed from the inventory", 8000)

    def open_migrate_wizard(self) -> QWidget | None:
        keys = self.resources.selected_vm_keys()
        return open_wizard(self.engine, keys, None, self) if keys else None

    def open_move_disk(self) -> QWidget | None:
        keys = self.resources.selected_vm_keys()
        if len(keys) != 1:
            return None
        from xencenter_lite.ui.move_disk import MoveDiskDialog

        dev = self.properties.storage.selected_dev() if self.properties.storage.vm_key == \
            keys[0] else None
        dialog = MoveDiskDialog(self.engine, keys[0], dev, parent=self)
        dialog.open()
        return dialog

    def open_copy(self) -> QWidget | None:
        keys = self.resources.selected_vm_keys()
        if len(keys) != 1:
            return None
        from xencenter_lite.ui.copy_dialog import CopyVmDialog

        dialog = CopyVmDialog(self.engine, keys[0], parent=self)
        dialog.open()
        return dialog

    def open_memory(self) -> QWidget | None:
        keys = self.resources.selected_vm_keys()
        if len(keys) != 1:
            return None
        from xencenter_lite.ui.memory_dialog import MemoryDialog

        dialog = MemoryDialog(self.engine, keys[0], parent=self)
        dialog.open()
        return dialog

    def power(self, action: PowerAction) -> QMessageBox | None:
        """Run `action` on the selected VMs; shutting down, forcing off and rebooting are
        confirmed first (a VM's service stops). Returns the confirmation, if one is shown."""
        keys = self.resources.selected_vm_keys()
        if not keys or not self.power_actions[action].isEnabled():
            return None

        def go() -> None:
            for key in keys:
                self.engine.power(key, action)

        if action not in (PowerAction.SHUTDOWN, PowerAction.FORCE_SHUTDOWN,
                          PowerAction.REBOOT):
            go()
            return None
        snap = self.engine.snapshot()
        names = ", ".join(f"'{v.name}'" for k in keys if (v := snap.vm(k)) is not None)
        what = {PowerAction.SHUTDOWN: "shut down", PowerAction.REBOOT: "reboot",
                PowerAction.FORCE_SHUTDOWN: "force shut down"}[action]
        text = f"Are you sure you want to {what} {names}?"
        if action is PowerAction.FORCE_SHUTDOWN:
            text += " It is turned off at once, as if its power were cut: unsaved data is lost."
        box = QMessageBox(QMessageBox.Icon.Question, action.label, text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setObjectName("confirmPower")
        box.setDefaultButton(QMessageBox.StandardButton.No
                             if action is PowerAction.FORCE_SHUTDOWN
                             else QMessageBox.StandardButton.Yes)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r: go() if box.clickedButton() is box.button(
            QMessageBox.StandardButton.Yes) else None)
        box.open()
        return box

    def open_enter_maintenance(self) -> QWidget | None:
        server = self.selected_server()
        if server is None:
            return None
        from xencenter_lite.ui.maintenance import MaintenanceDialog

        dialog = MaintenanceDialog(self.engine, server, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def open_exit_maintenance(self) -> QWidget | None:
        server = self.selected_server()
        if server is None:
            return None
        from xencenter_lite.ui.maintenance import exit_maintenance

        return exit_maintenance(self.engine, server, self)

    def about(self) -> QMessageBox:
        box = QMessageBox(QMessageBox.Icon.Information, "About XenCenter Lite",
                          f"XenCenter Lite {_version()}\n\nLive migration of virtual machines "
                          "between libvirt servers.", QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return box

    def select(self, key: Any) -> bool:
        return self.resources.select(key)

    def closeEvent(self, event: QCloseEvent) -> None:
        running = [j for j in self.engine.jobs if not j.state.finished]
        if running and not self._really_close:
            event.ignore()
            box = QMessageBox(QMessageBox.Icon.Warning, "Exit XenCenter Lite",
                              f"{len(running)} migration(s) or disk move(s) are still running. "
                              "Cancel them and exit? Each VM keeps running where it was.",
                              QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                              self)
            box.setObjectName("confirmExit")
            box.setDefaultButton(QMessageBox.StandardButton.No)  # Enter does not cancel jobs
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

            def finished(_r: int) -> None:
                if box.clickedButton() is box.button(QMessageBox.StandardButton.Yes):
                    spawn(self._cancel_then_close(running))

            box.finished.connect(finished)
            box.open()
            return
        super().closeEvent(event)
        self.closed.emit()

    async def _cancel_then_close(self, jobs: list[Job]) -> None:
        """Roll the jobs back properly (the engine's cancel) before the engine shuts down."""
        self.statusBar().showMessage(f"Cancelling {len(jobs)} job(s) before exiting…")
        await asyncio.gather(*(self.engine.cancel(j) for j in jobs), return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.engine.wait(jobs), 120)
        self._really_close = True
        self.close()
