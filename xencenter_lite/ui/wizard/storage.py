"""The Storage page: all disks on one SR, or an SR per disk."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QRadioButton,
    QTableWidgetItem,
)

from xencenter_lite.core.model import Snapshot
from xencenter_lite.core.plan import (
    MigrationPlan,
    MigrationRequest,
    build_plan,
    default_sr,
)
from xencenter_lite.ui.common import format_size
from xencenter_lite.ui.move_disk import sr_reason
from xencenter_lite.ui.wizard.common import (
    Entry,
    VmKey,
    WizardPage,
    current_enabled,
    enabled_at,
    fill_combo,
    grid_table,
)

if TYPE_CHECKING:
    from xencenter_lite.ui.wizard.migrate_wizard import MigrateWizard


class StoragePage(WizardPage):
    def __init__(self, wizard: MigrateWizard) -> None:
        super().__init__(wizard, "storagePage", "Configure storage",
                         "Choose the storage repositories (SRs) on the destination where the "
                         "migrated virtual disks will be placed.")
        self.same = QRadioButton("Place all migrated virtual disks on the &same SR")
        self.same.setObjectName("sameSrRadio")
        self.specific = QRadioButton("Place migrated virtual disks onto &specified SRs")
        self.specific.setObjectName("specificSrRadio")
        group = QButtonGroup(self)
        group.addButton(self.same)
        group.addButton(self.specific)
        self.sr_combo = QComboBox()
        self.sr_combo.setObjectName("sameSrCombo")
        self.sr_combo.setMinimumWidth(320)
        self.table = grid_table("diskSrTable", ["VM", "Virtual disk", "Size",
                                                "Storage repository"])
        self.layout_.addWidget(self.same)
        row = QFormLayout()
        row.setContentsMargins(24, 0, 0, 0)
        row.addRow("Storage repository:", self.sr_combo)
        self.layout_.addLayout(row)
        self.layout_.addWidget(self.specific)
        self.layout_.addWidget(self.table)
        self.finish_layout()
        self.disk_combos: dict[tuple[VmKey, str], QComboBox] = {}
        self._built_for: dict[VmKey, str | None] | None = None
        self.same.toggled.connect(self._mode_changed)
        self.sr_combo.currentIndexChanged.connect(self._same_picked)

    def initializePage(self) -> None:
        w = self.w
        homes = {k: w.home(k) for k in w.vm_keys}
        if homes != self._built_for:  # a new destination: start from its defaults
            self._built_for = homes
            snap = w.engine.snapshot()
            servers = w.home_servers()
            w.sr = default_sr(snap, servers[0]) if servers else None
            w.disk_srs = {}
            for plan in self._plans(snap, sr=w.sr):
                w.disk_srs[plan.vm.key] = {d.dev: d.target_sr for d in plan.disks
                                           if d.target_sr}
            self._build_table(snap)
            with QSignalBlocker(self.same), QSignalBlocker(self.specific):
                self.same.setChecked(w.same_sr)
                self.specific.setChecked(not w.same_sr)
            self._refresh()
            if not current_enabled(self.sr_combo):  # no room on the default SR: the next
                w.sr = next((self.sr_combo.itemData(i) for i in range(self.sr_combo.count())
                             if enabled_at(self.sr_combo, i)), w.sr)
        self._refresh()

    def _plans(self, snap: Snapshot, sr: str | None = None,
               disk_srs: dict[VmKey, dict[str, str]] | None = None) -> list[MigrationPlan]:
        out = []
        for vm in self.w.vms(snap):
            home = self.w.home(vm.key) or ""
            req = MigrationRequest(vm.key, home, sr=sr,
                                   disk_srs=dict((disk_srs or {}).get(vm.key, {})))
            out.append(build_plan(snap, vm, req))
        return out

    def _entry(self, snap: Snapshot, name: str, plans: list[MigrationPlan],
               servers: list[str]) -> Entry:
        """An SR entry; its space is counted over every disk these plans send to it."""
        reason, available = None, None
        for server in servers:
            need = sum(d.capacity for p in plans if p.destination == server
                       for d in p.copied_disks if d.target_sr == name)
            reason = reason or sr_reason(snap, server, name, need)
            sr = snap.sr(server, name)
            if sr is not None:
                available = sr.available if available is None else min(available, sr.available)
        if reason is not None:
            return Entry(f"{name} - {reason}", name, reason)
        return Entry(f"{name}, {format_size(available or 0)} available", name)

    def _sr_names(self, snap: Snapshot, servers: list[str]) -> list[str]:
        sets = [{s.name for s in snap.srs_on(server)} for server in servers]
        return sorted(set.intersection(*sets)) if sets else []

    def _build_table(self, snap: Snapshot) -> None:
        rows = [(vm, d) for vm in self.w.vms(snap) for d in vm.hard_disks]
        self.table.setRowCount(len(rows))
        self.disk_combos = {}
        for i, (vm, disk) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(vm.name))
            self.table.setItem(i, 1, QTableWidgetItem(disk.dev))
            self.table.setItem(i, 2, QTableWidgetItem(format_size(disk.capacity)))
            combo = QComboBox()
            combo.setObjectName(f"sr:{vm.name}:{disk.dev}")
            combo.currentIndexChanged.connect(
                lambda _, k=vm.key, dev=disk.dev, c=combo: self._disk_picked(k, dev, c))
            self.table.setCellWidget(i, 3, combo)
            self.disk_combos[(vm.key, disk.dev)] = combo
        self.table.resizeColumnsToContents()

    def _refresh(self) -> None:
        """Recount every SR entry: the room an SR has left depends on all other choices."""
        w = self.w
        snap = w.engine.snapshot()
        servers = w.home_servers()
        fill_combo(self.sr_combo, [self._entry(snap, n, self._plans(snap, sr=n), servers)
                                   for n in self._sr_names(snap, servers)], w.sr)
        for (key, dev), combo in self.disk_combos.items():
            home = w.home(key)
            entries = []
            for name in self._sr_names(snap, [home] if home else []):
                choice = {k: dict(v) for k, v in w.disk_srs.items()}
                choice.setdefault(key, {})[dev] = name
                entries.append(self._entry(snap, name, self._plans(snap, disk_srs=choice),
                                           [home] if home else []))
            fill_combo(combo, entries, w.disk_srs.get(key, {}).get(dev))
        self.sr_combo.setEnabled(w.same_sr)
        self.table.setEnabled(not w.same_sr)
        self.changed()

    def _mode_changed(self) -> None:
        self.w.same_sr = self.same.isChecked()
        self._refresh()

    def _same_picked(self) -> None:
        self.w.sr = self.sr_combo.currentData()
        self._refresh()

    def _disk_picked(self, key: VmKey, dev: str, combo: QComboBox) -> None:
        self.w.disk_srs.setdefault(key, {})[dev] = combo.currentData()
        self._refresh()

    def isComplete(self) -> bool:
        if self.w.same_sr:
            return current_enabled(self.sr_combo)
        return all(current_enabled(c) for c in self.disk_combos.values())
