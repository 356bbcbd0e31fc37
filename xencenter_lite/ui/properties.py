"""The tabs on the right: General (what the selected object is), for a VM Storage, and for
a VM or a server Networking.

Both follow the engine's snapshots, and only rebuild what changed, so a selected disk row
stays selected while the VM's numbers update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from xencenter_lite.core.folders import norm_folder
from xencenter_lite.core.inventory import redact_uri
from xencenter_lite.core.jobs import Job, JobState
from xencenter_lite.core.model import SR, VM, Disk, Pool, Server, Snapshot
from xencenter_lite.ui.common import format_size
from xencenter_lite.ui.memory_tab import MemoryTab
from xencenter_lite.ui.performance import PerformanceTab
from xencenter_lite.ui.resources import NodeKey, find_object, follow_engine

if TYPE_CHECKING:
    from xencenter_lite.engine import Engine


Rows = list[tuple[str, str]]


def fleet_rows(snap: Snapshot) -> tuple[Rows, Rows]:
    """The home pane's rows about the fleet (read from one snapshot): those before the jobs'
    rows, and those after them."""
    def counted(things: list[str]) -> str:
        parts = {t: things.count(t) for t in dict.fromkeys(things)}
        return ", ".join(f"{n} {t}" for t, n in parts.items())

    servers = list(snap.servers.values())
    connected = sum(1 for s in servers if s.connected)
    states = [vm.state.value for vm in sorted(snap.vms, key=lambda v: v.state.value)]
    maintenance = [s.name for s in servers if s.connected and s.maintenance]
    rows = [
        ("Pools", str(len(snap.pools))),
        ("Servers", f"{len(servers)} ({connected} connected"
                    + (f", {len(servers) - connected} not connected" if connected < len(servers)
                       else "") + ")"),
        ("VMs", f"{len(snap.vms)}" + (f" ({counted(states)})" if states else "")),
        # As the tree shows them: a pool's shared SR once, every other SR on its server.
        ("Storage repositories", str(len({
            ("pool", pool, sr.name) if sr.shared and (pool := snap.servers[sr.server].pool)
            else ("server", sr.server, sr.name) for sr in snap.srs
            if sr.server in snap.servers}))),
    ]
    after = [("In maintenance mode", ", ".join(sorted(maintenance)))] if maintenance else []
    return rows, after


def overview(fleet: tuple[Rows, Rows], jobs: list[Job]) -> tuple[str, Rows]:
    """The home pane, shown while nothing is selected (at start-up): the fleet in numbers
    (`fleet_rows`), and its jobs."""
    running = sum(1 for j in jobs if not j.state.finished)
    failed = sum(1 for j in jobs if j.state is JobState.FAILED)
    rows = [*fleet[0], ("Jobs running", str(running)), *fleet[1]]
    if failed:
        rows.append(("Jobs failed", f"{failed} (see Events)"))
    return "XenCenter Lite", rows


def describe(snap: Snapshot, key: NodeKey | None, job: Job | None = None
             ) -> tuple[str, list[tuple[str, str]]]:
    """(heading, [(label, value)]) for the General tab."""
    if key is None:
        return "", []
    obj = find_object(snap, key)
    if isinstance(obj, VM):
        state = obj.state.value.capitalize()
        if job is not None and not job.state.finished:
            state += f" — {job.title} ({job.state.value}, {job.percent:.0f}%)"
        return obj.name, [
            ("Name", obj.name), ("State", state), *memory_rows(obj),
            ("vCPUs", str(obj.vcpus)), ("Server", obj.server),
            ("Home server", obj.home_server or "(none)"), ("Folder", obj.folder or "(none)"),
            ("Virtual disks", str(len(obj.hard_disks))), ("UUID", obj.uuid),
        ]
    if isinstance(obj, Server):
        rows = [("Name", obj.name), ("Pool", obj.pool or "(standalone)")]
        if obj.connected:
            rows += [("Status", "Connected"), ("Host name", obj.hostname or "?"),
                     ("Memory", format_size(obj.host_memory)),
                     ("Memory free for VMs", format_size(snap.memory_available(obj.name))),
                     ("VMs", str(len(snap.vms_on(obj.name))))]
        else:
            rows.append(("Status", f"Disconnected: {obj.error}" if obj.error
                         else "Connecting…"))
        if obj.memory_limit:
            rows.append(("VM memory limit", format_size(obj.memory_limit)))
        if obj.default_sr:
            rows.append(("Default SR", obj.default_sr))
        rows += [(f"Address ({net})", addr) for net, addr in sorted(obj.addresses.items())]
        rows.append(("URI", redact_uri(obj.uri)))
        if obj.host_uuid:
            rows.append(("Host UUID", obj.host_uuid))
        return obj.name, rows
    if isinstance(obj, Pool):
        return obj.name, [("Name", obj.name), ("Servers", ", ".join(obj.members)),
                          ("Default SR", obj.default_sr or "(none)"),
                          ("HA", "Enabled" if obj.ha_enabled else "Disabled")]
    if isinstance(obj, SR):
        where = (f"pool {snap.servers[obj.server].pool}" if obj.shared
                 and obj.server in snap.servers else obj.server)
        return obj.name, [
            ("Name", obj.name), ("Type", obj.type + ("" if obj.supported else " (unsupported)")),
            ("Path", obj.path), ("Shared", obj.sharing.label), ("Seen by", where),
            ("Size", format_size(obj.capacity)), ("Free", format_size(obj.available)),
            ("Used", format_size(obj.allocation)),
            ("Virtual disks", sr_disks(snap, obj)),
        ]
    if key[0] == "folder":
        path = key[1]
        inside = [v.name for v in snap.vms if norm_folder(v.folder) == path]
        return path or "(no folder)", [("Folder", path or "(no folder)"),
                                       ("VMs", ", ".join(sorted(inside)) or "(empty)")]
    if key[0] == "group":
        return "Servers", [("Servers", ", ".join(sorted(snap.servers)))]
    return "", []


def sr_disks(snap: Snapshot, sr: SR) -> str:
    """The disks an SR holds, with their VMs ("vda of web-1 (10.0 GiB)"): a pool's shared SR
    holds those of every member's VMs on it."""
    pool = snap.servers[sr.server].pool if sr.server in snap.servers else None
    servers = ({n for n, s in snap.servers.items() if s.pool == pool} if sr.shared and pool
               else {sr.server})
    found = sorted((vm.name, d.dev, d.is_cdrom, d.capacity) for vm in snap.vms
                   if vm.server in servers for d in vm.disks if d.sr == sr.name)
    return ", ".join(f"{dev} of {name} (CD)" if cd else f"{dev} of {name} ({format_size(size)})"
                     for name, dev, cd, size in found) or "(none)"


def memory_rows(vm: VM) -> list[tuple[str, str]]:
    """Static maximum, what the balloon leaves the VM now, and its Dynamic Memory Control range."""
    if vm.dynamic_min is not None and vm.dynamic_max is not None:
        dynamic = f"{format_size(vm.dynamic_min)} / {format_size(vm.dynamic_max)}"
    else:
        dynamic = "Not set"
    current = format_size(vm.memory_in_use) if vm.is_running else "(not running)"
    return [("Static maximum", format_size(vm.memory)), ("Current memory", current),
            ("Dynamic minimum / maximum", dynamic)]


class GeneralTab(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("generalTab")
        self.heading = QLabel(self)
        font = self.heading.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.heading.setFont(font)
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.memory_button = QPushButton("&Memory…", self)
        self.memory_button.setObjectName("memoryButton")
        self.memory_button.setToolTip("Set the VM's Dynamic Memory Control range and the "
                                      "memory it has now")
        self.memory_button.hide()  # a VM's button
        buttons = QHBoxLayout()
        buttons.addWidget(self.memory_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addLayout(self.form)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self._shown: tuple[str, list[tuple[str, str]]] = ("", [])
        self._fields: list[QLabel] = []

    def show_rows(self, heading: str, rows: list[tuple[str, str]]) -> None:
        if (heading, rows) == self._shown:
            return  # unchanged: don't disturb a text selection
        old = self._shown[1]
        self._shown = (heading, rows)
        self.heading.setText(heading)
        if [label for label, _ in rows] == [label for label, _ in old]:
            # The same rows (a job's progress, a VM's memory): new values in place, rather
            # than a new form several times a second.
            for field, (_, value), (_, was) in zip(self._fields, rows, old, strict=True):
                if value != was:
                    field.setText(value)
            return
        while self.form.rowCount():
            self.form.removeRow(0)
        self._fields = []
        for label, value in rows:
            field = QLabel(value)
            field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            field.setWordWrap(True)
            self.form.addRow(f"{label}:", field)
            self._fields.append(field)

    def value(self, label: str) -> str | None:
        return dict(self._shown[1]).get(label)


DISK_COLUMNS = ("Device", "SR", "Size", "Allocation", "Path")


class StorageTab(QWidget):
    """The VM's disks; Move… opens the live disk move for the selected one."""

    def __init__(self, engine: Engine, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("storageTab")
        self.engine = engine
        self.vm_key: tuple[str, str] | None = None
        self._disks: tuple[Disk, ...] | None = None
        self.table = QTableWidget(0, len(DISK_COLUMNS), self)
        self.table.setObjectName("disksTable")
        self.table.setHorizontalHeaderLabels(DISK_COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.
                                                           ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.move_button = QPushButton("Move…", self)
        self.move_button.setObjectName("moveDiskButton")
        self.move_button.setToolTip("Move the selected virtual disk to another SR while the VM "
                                    "keeps running")
        self.move_button.clicked.connect(self.move_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(self.move_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self._update_buttons()

    def show_vm(self, vm: VM | None) -> None:
        self.vm_key = vm.key if vm else None
        disks = vm.disks if vm else ()
        if disks == self._disks:
            return
        selected = self.selected_dev()
        self._disks = disks
        self.table.setRowCount(len(disks))
        for r, d in enumerate(disks):
            values = (d.dev, d.sr or ("(CD drive)" if d.is_cdrom else "(none)"),
                      format_size(d.capacity) if d.capacity else "",
                      format_size(d.allocation) if d.allocation else "", d.path or "(empty)")
            for c, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, d.dev)
                self.table.setItem(r, c, item)
            if d.dev == selected:
                self.table.selectRow(r)
        self._update_buttons()

    def selected_dev(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def select_dev(self, dev: str) -> None:
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == dev:
                self.table.selectRow(r)

    def _update_buttons(self) -> None:
        dev = self.selected_dev()
        disk = next((d for d in self._disks or () if d.dev == dev), None)
        self.move_button.setEnabled(disk is not None and not disk.is_cdrom)

    def move_selected(self) -> Any:
        dev = self.selected_dev()
        if self.vm_key is None or dev is None:
            return None
        from xencenter_lite.ui.move_disk import MoveDiskDialog

        dialog = MoveDiskDialog(self.engine, self.vm_key, dev, parent=self.window())
        dialog.open()
        return dialog


class NetworkingTab(QWidget):
    """A VM's NICs (where each is plugged), or what a server's NICs can be plugged into
    (its libvirt networks and its bridges)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("networkingTab")
        self.table = QTableWidget(0, 3, self)
        self.table.setObjectName("networkingTable")
        self.table.setAccessibleName("Networks")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.
                                                           ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        self._shown: tuple[tuple[str, ...], list[tuple[str, ...]]] | None = None

    def show_object(self, obj: VM | Server) -> None:
        if isinstance(obj, VM):
            headers: tuple[str, ...] = ("MAC address", "Model", "Network")
            rows: list[tuple[str, ...]] = [(n.mac, n.model, n.described) for n in obj.nics]
        else:
            headers = ("Name", "Kind", "State")
            rows = [(n.name, "network" + (f" (bridge {n.bridge})" if n.bridge else ""),
                     "active" if n.active else "inactive")
                    for n in sorted(obj.virtual_networks, key=lambda n: n.name)]
            rows += [(b, "bridge", "in use") for b in sorted(obj.bridges)]
        if (headers, rows) == self._shown:
            return
        self._shown = (headers, rows)
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(value))

    def cell(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return item.text() if item else ""


class PropertiesView(QTabWidget):
    """What XenCenter shows on the right for the selected object."""

    def __init__(self, engine: Engine, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("propertiesTabs")
        self.setAccessibleName("Properties")
        self.engine = engine
        self.key: NodeKey | None = None
        # The home pane's fleet rows and the snapshot they were read from: a job's progress
        # (several times a second) recounts its jobs, not every VM and SR.
        self._fleet: tuple[Snapshot, tuple[Rows, Rows]] | None = None
        self.general = GeneralTab(self)
        self.storage = StorageTab(engine, self)
        self.storage.hide()  # a tab only while a VM is selected; until then not drawn at all
        self.networking = NetworkingTab(self)
        self.networking.hide()  # a VM's or a server's
        self.memory = MemoryTab(self.open_memory, self)
        self.memory.hide()  # a VM's or a server's
        self.performance = PerformanceTab(engine, self)
        self.performance.hide()  # a VM's or a server's; read only while on show
        self.addTab(self.general, "General")
        self.general.memory_button.clicked.connect(self.open_memory)
        follow_engine(engine, self._on_snapshot, self._on_job)

    def show_object(self, key: NodeKey | None) -> None:
        self.key = key
        self._refresh(self.engine.snapshot())

    def _on_snapshot(self, snap: Snapshot) -> None:
        self._refresh(snap)

    def _on_job(self, job: Job) -> None:
        if self.key is None or self.key[0] == "root" or self.key == ("vm", job.vm_key):
            # (the home pane counts jobs)
            self._refresh(self.engine.snapshot())

    def _fleet_rows(self, snap: Snapshot) -> tuple[Rows, Rows]:
        if self._fleet is None or self._fleet[0] is not snap:
            self._fleet = (snap, fleet_rows(snap))
        return self._fleet[1]

    def _refresh(self, snap: Snapshot) -> None:
        job = None
        if self.key is not None and self.key[0] == "vm":
            job = next((j for j in reversed(self.engine.jobs) if j.vm_key == self.key[1]),
                       None)
        home = self.key is None or self.key[0] == "root"  # nothing chosen, or the root node
        self.general.show_rows(*(overview(self._fleet_rows(snap), self.engine.jobs) if home
                                 else describe(snap, self.key, job)))
        vm = find_object(snap, self.key) if self.key and self.key[0] == "vm" else None
        self.general.memory_button.setVisible(vm is not None)
        obj = find_object(snap, self.key) if self.key else None
        # The tabs as XenCenter orders them: a VM's General, Memory, Storage, Networking,
        # Performance; a server's the same without Storage; anything else, General alone.
        wanted: list[tuple[QWidget, str]] = [(self.general, "General")]
        if isinstance(obj, VM | Server):
            wanted.append((self.memory, "Memory"))
            if vm is not None:
                wanted.append((self.storage, "Storage"))
            wanted += [(self.networking, "Networking"), (self.performance, "Performance")]
        self._sync_tabs(wanted)
        self.storage.show_vm(vm)
        if isinstance(obj, VM | Server):
            self.memory.show_object(snap, obj)
            self.networking.show_object(obj)
            self.performance.show_object(obj)
        else:
            self.performance.show_object(None)

    def _sync_tabs(self, wanted: list[tuple[QWidget, str]]) -> None:
        """Show exactly these tabs in this order; a tab that stays is not taken out (it
        keeps being the current one)."""
        keep = {id(w) for w, _label in wanted}
        optional: tuple[QWidget, ...] = (self.memory, self.storage, self.networking,
                                         self.performance)
        for tab in optional:
            if id(tab) not in keep and self.indexOf(tab) >= 0:
                self.removeTab(self.indexOf(tab))
        for i, (w, label) in enumerate(wanted):
            at = self.indexOf(w)
            if at == i:
                continue
            if at >= 0:
                self.removeTab(at)
            self.insertTab(i, w, label)

    def open_memory(self) -> Any:
        vm = find_object(self.engine.snapshot(), self.key) if self.key else None
        if not isinstance(vm, VM):
            return None
        from xencenter_lite.ui.memory_dialog import MemoryDialog

        dialog = MemoryDialog(self.engine, vm.key, parent=self.window())
        dialog.open()
        return dialog
