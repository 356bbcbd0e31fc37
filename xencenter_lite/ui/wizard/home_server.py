"""The Home Server page: the pool member each VM runs on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import (
    QComboBox,
    QTableWidgetItem,
)

from xencenter_lite.core.placement import rate
from xencenter_lite.core.reasons import short_reason
from xencenter_lite.ui.common import format_size, star_text
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


class HomeServerPage(WizardPage):
    def __init__(self, wizard: MigrateWizard) -> None:
        super().__init__(wizard, "homeServerPage", "Select a home server in the pool",
                         "The home server is the server the VM will run on; it is recorded "
                         "as the VM's home server.")
        self.table = grid_table("homeServerTable", ["VM", "Current server", "Home server"])
        self.layout_.addWidget(self.table)
        self.finish_layout()
        self.combos: dict[VmKey, QComboBox] = {}

    def initializePage(self) -> None:
        w = self.w
        assert w.target is not None
        w.choose_default_homes()
        snap = w.engine.snapshot()
        self.table.setRowCount(len(w.vm_keys))
        self.combos = {}
        for row, key in enumerate(w.vm_keys):
            vm = snap.vm(key)
            self.table.setItem(row, 0, QTableWidgetItem(w.names[key]))
            self.table.setItem(row, 1, QTableWidgetItem(vm.server if vm else key[0]))
            combo = QComboBox()
            combo.setObjectName(f"home:{w.names[key]}")
            entries = []
            for m in w.target.members:
                why = w.refusal(key, m)
                if why is not None:
                    entries.append(Entry(f"{m} - {short_reason(why)}", m, short_reason(why),
                                         why.message))
                else:
                    free = format_size(snap.memory_available(m)) if m in snap.servers else "?"
                    rating = rate(snap, vm, m, set(w.engine.busy) - {key}) if vm else None
                    if rating is not None and rating.eligible:
                        entries.append(Entry(f"{m} ({free} free memory)  "
                                             f"{star_text(rating.stars)}", m,
                                             tip="; ".join(rating.reasons)))
                    else:
                        entries.append(Entry(f"{m} ({free} free memory)", m))
            fill_combo(combo, entries, w.homes.get(key))
            combo.currentIndexChanged.connect(lambda _, k=key, c=combo: self._picked(k, c))
            self.table.setCellWidget(row, 2, combo)
            self.combos[key] = combo
        self.table.resizeColumnsToContents()
        self.changed()

    def _picked(self, key: VmKey, combo: QComboBox) -> None:
        self.w.homes[key] = combo.currentData()
        self.changed()

    def isComplete(self) -> bool:
        return bool(self.combos) and all(current_enabled(c) for c in self.combos.values())
