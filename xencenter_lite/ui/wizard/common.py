"""What the Migrate VM wizard's pages share: the page ids and names, the targets, the
combo-box entries with their reasons, and the page base class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QTableWidget,
    QVBoxLayout,
    QWizardPage,
)

from xencenter_lite.core.model import Snapshot
from xencenter_lite.core.plan import (
    DataPath,
    MigrationRequest,
)
from xencenter_lite.ui.common import problem_label

if TYPE_CHECKING:
    from xencenter_lite.ui.wizard.migrate_wizard import MigrateWizard


VmKey = tuple[str, str]
DESTINATION, HOME_SERVER, STORAGE, NETWORKING, STORAGE_NETWORK, REVIEW = range(6)
STEP_NAMES = {DESTINATION: "Destination", HOME_SERVER: "Home Server", STORAGE: "Storage",
              NETWORKING: "Networking", STORAGE_NETWORK: "Storage network",
              REVIEW: "Finish"}
ADD_SERVER = "Add a pool or standalone server…"
MANAGEMENT_WARNING = ("Due to performance reasons, it is recommended that you do not use your "
                      "management network for live migration.")

HOW = {
    DataPath.LIVE: "Live (the VM keeps its state)",
    DataPath.STREAM: "Halted: disks copied through the console and verified, then its "
                     "definition",
    DataPath.DEFINITION: "Halted: its definition only (the disks stay)",
    DataPath.DIRECT: "Halted: started paused (no guest code runs), its disks sent directly "
                     "over the storage network, then turned off there",
}

SAVED_HOW = ("Halted with a saved state: restored paused, migrated over the storage network, "
             "saved again there")

@dataclass(frozen=True)
class Target:
    """A destination entry: a pool (any of its members) or a standalone server."""

    name: str
    members: tuple[str, ...]
    is_pool: bool


def targets_of(snap: Snapshot) -> list[Target]:
    out = [Target(p.name, p.members, True) for p in snap.pools.values() if p.members]
    return out + [Target(s.name, (s.name,), False) for s in snap.servers.values()
                  if s.pool is None]


@dataclass(frozen=True)
class Entry:
    """One drop-down entry; `reason` says why it is disabled."""

    text: str
    value: Any
    reason: str | None = None
    tip: str = ""


def fill_combo(combo: QComboBox, entries: list[Entry], current: Any) -> None:
    """Show `entries` without emitting change signals, keeping `current` selected.

    The same values in the same order are updated in place: replacing the model of a combo
    that is emitting its own change signal would delete the model under its feet."""
    model = combo.model()
    same = isinstance(model, QStandardItemModel) and model.rowCount() == len(entries) and all(
        model.item(i).data(Qt.ItemDataRole.UserRole) == e.value for i, e in enumerate(entries))
    if not same:
        model = QStandardItemModel(combo)
        for e in entries:
            item = QStandardItem()
            item.setData(e.value, Qt.ItemDataRole.UserRole)
            model.appendRow(item)
    assert isinstance(model, QStandardItemModel)
    index = -1
    for i, e in enumerate(entries):
        item = model.item(i)
        item.setText(e.text)
        item.setEnabled(e.reason is None)
        item.setToolTip(e.tip or e.reason or "")
        if e.value == current:
            index = i
    with QSignalBlocker(combo):
        if not same:
            combo.setModel(model)
        if combo.currentIndex() != index:
            combo.setCurrentIndex(index)


def enabled_at(combo: QComboBox, i: int) -> bool:
    model = combo.model()
    return i >= 0 and bool(model.flags(model.index(i, 0)) & Qt.ItemFlag.ItemIsEnabled)


def current_enabled(combo: QComboBox) -> bool:
    return enabled_at(combo, combo.currentIndex())


def grid_table(name: str, headers: list[str]) -> QTableWidget:
    """A read-only grid whose last column (the drop-downs) takes the room left."""
    table = QTableWidget(0, len(headers))
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.horizontalHeader().setMinimumSectionSize(90)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def request_key(requests: list[MigrationRequest]) -> tuple[Any, ...]:
    return tuple((r.vm, r.destination, r.sr, tuple(sorted(r.disk_srs.items())), r.network,
                  r.tls, r.settings, tuple(sorted(r.nics.items()))) for r in requests)


class WizardPage(QWizardPage):
    """A page with a line that says why it refuses to go on."""

    def __init__(self, wizard: MigrateWizard, name: str, title: str, subtitle: str) -> None:
        super().__init__()
        self.w = wizard
        self.setObjectName(name)
        self.setAccessibleName(f"{title} page")
        self.setTitle(title)
        self.setSubTitle(subtitle)
        self.layout_ = QVBoxLayout(self)
        self.problem = problem_label("pageProblem")
        wizard.vmsGone.connect(self._vms_gone)

    def _vms_gone(self) -> None:
        if self.w.currentPage() is self:
            self.show_problem(self.w.gone_problem())

    def finish_layout(self) -> None:
        self.layout_.addWidget(self.problem)

    def show_problem(self, text: str | None) -> None:
        self.problem.setText(text or "")
        self.problem.setVisible(bool(text))

    def validatePage(self) -> bool:
        problem = self.w.connectivity_problem(self.w.currentId())
        self.show_problem(problem)
        return problem is None

    def cleanupPage(self) -> None:
        self.show_problem(None)

    def changed(self) -> None:
        self.show_problem(None)
        self.completeChanged.emit()
        self.w._show_steps()
