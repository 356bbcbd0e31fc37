"""The Networking page: each NIC to a network or bridge of the home server (across
pools).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import (
    QComboBox,
    QTableWidgetItem,
)

from xencenter_lite.core.model import describe_nic_target
from xencenter_lite.ui.wizard.common import (
    Entry,
    VmKey,
    WizardPage,
    current_enabled,
    fill_combo,
    grid_table,
)

if TYPE_CHECKING:
    from xencenter_lite.ui.wizard.migrate_wizard import MigrateWizard


class NetworkingPage(WizardPage):
    """XenCenter's Networking step: each NIC of each VM onto one of its home server's
    networks or bridges, the one of the same name where the server has it (otherwise the
    operator chooses: Next waits for it)."""

    def __init__(self, wizard: MigrateWizard) -> None:
        super().__init__(wizard, "networkingPage", "Configure networking",
                         "Choose the network or bridge on the destination that each virtual "
                         "network interface is connected to.")
        self.table = grid_table("nicNetworkTable", ["VM", "Interface", "Now on",
                                                    "On the destination"])
        self.table.setAccessibleName("Network interfaces and their destination networks")
        self.layout_.addWidget(self.table)
        self.finish_layout()
        self.nic_combos: dict[tuple[VmKey, str], QComboBox] = {}
        self._built_for: dict[VmKey, str | None] | None = None

    def initializePage(self) -> None:
        w = self.w
        homes = {k: w.home(k) for k in w.vm_keys}
        if homes != self._built_for:  # a new destination: the same names where it has them
            self._built_for = homes
            snap = w.engine.snapshot()
            rows = [(vm, n) for vm in w.vms(snap) for n in vm.nics if n.target]
            self.table.setRowCount(len(rows))
            self.nic_combos = {}
            w.nic_maps = {}
            for i, (vm, nic) in enumerate(rows):
                home = homes.get(vm.key) or ""
                srv = snap.servers.get(home)
                targets = srv.nic_targets if srv is not None else []
                self.table.setItem(i, 0, QTableWidgetItem(vm.name))
                self.table.setItem(i, 1, QTableWidgetItem(
                    f"{nic.mac} ({nic.model})" if nic.model else nic.mac))
                self.table.setItem(i, 2, QTableWidgetItem(nic.described))
                combo = QComboBox()
                combo.setObjectName(f"nic:{vm.name}:{nic.mac}")
                combo.setAccessibleName(f"Destination network of {vm.name}'s NIC {nic.mac}")
                entries = [Entry(describe_nic_target(t), t) for t in targets]
                current = nic.target if nic.target in targets else None
                if current is None and nic.kind == "bridge":
                    # A bridge no network or VM there uses may exist all the same (libvirt
                    # has no safe way to list them): offered, and Review warns.
                    current = nic.target
                    entries.insert(0, Entry(f"{nic.described} (the same name; not seen in "
                                            "use there)", current))
                elif current is None:
                    why = f"'{home}' has no {nic.described}; choose one it has"
                    entries.insert(0, Entry(f"(choose: {why})", None, why))
                fill_combo(combo, entries, current)
                combo.currentIndexChanged.connect(
                    lambda _, k=vm.key, mac=nic.mac, c=combo: self._picked(k, mac, c))
                self.table.setCellWidget(i, 3, combo)
                self.nic_combos[(vm.key, nic.mac)] = combo
                if current is not None:
                    w.nic_maps.setdefault(vm.key, {})[nic.mac] = current
            self.table.resizeColumnsToContents()
        self.changed()

    def _picked(self, key: VmKey, mac: str, combo: QComboBox) -> None:
        if current_enabled(combo):
            self.w.nic_maps.setdefault(key, {})[mac] = combo.currentData()
        self.changed()

    def isComplete(self) -> bool:
        return all(current_enabled(c) for c in self.nic_combos.values())
