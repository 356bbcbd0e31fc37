"""Server ▸ Enter Maintenance Mode… and Exit Maintenance Mode (XenCenter's EvacuateHostDialog).

The dialog lists every VM on the server with where it will go (placement's pick, which the
operator can change, or "Leave on this server") or what keeps it there and the fix; the
plan is read and checked in the background (engine.plan_maintenance), taken as a whole.
Enter Maintenance Mode is enabled only when no running VM would be left behind unasked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QMessageBox,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from xencenter_lite.core.checks import Code, Problem, blocking
from xencenter_lite.core.placement import Evacuation
from xencenter_lite.engine.queue import DEFAULT_CONCURRENCY
from xencenter_lite.ui.common import spawn

if TYPE_CHECKING:
    from xencenter_lite.engine import Engine

LEAVE = "Leave on this server"
LEAVE_KEY = "\x00leave"  # the combo's data for LEAVE (a server name cannot hold a NUL)


class MaintenanceDialog(QDialog):
    def __init__(self, engine: Engine, server: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("maintenanceDialog")
        self.setWindowTitle(f"Enter Maintenance Mode - '{server}'")
        self.engine, self.server = engine, server
        self.rows: list[Evacuation] = []
        self.problems: list[Problem] = []
        self.choices: dict[str, str | None] = {}
        self.pending = 0  # plans still being worked out (tests wait on it)
        self.jobs: list[object] = []

        intro = QLabel(f"The running VMs on '{server}' are migrated to the servers below; "
                       "the server then takes no VM until it leaves maintenance mode, when "
                       "they can come back.", self)
        intro.setWordWrap(True)
        self.table = QTableWidget(0, 3, self)
        self.table.setObjectName("evacuationTable")
        self.table.setAccessibleName("VMs on the server and where they go")
        self.table.setHorizontalHeaderLabels(["VM", "Destination", "Status"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.parallel = QSpinBox(self)
        self.parallel.setObjectName("parallelMoves")
        # No more than the queue runs at once (the console's engine has its slots).
        self.parallel.setRange(1, max(1, engine.concurrency))
        self.parallel.setValue(min(DEFAULT_CONCURRENCY, self.parallel.maximum()))
        form = QFormLayout()
        form.addRow("&Migrations at a time:", self.parallel)
        self.summary = QLabel("Working out where each VM goes…", self)
        self.summary.setObjectName("evacuationSummary")
        self.summary.setWordWrap(True)
        self.buttons = QDialogButtonBox(self)
        self.start = self.buttons.addButton("&Enter Maintenance Mode",
                                            QDialogButtonBox.ButtonRole.AcceptRole)
        self.start.setObjectName("enterMaintenance")
        self.start.setEnabled(False)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._enter)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.buttons)
        self.resize(760, 360)
        self.replan()

    # ---- the plan ---------------------------------------------------------------------------
    def replan(self) -> None:
        self.start.setEnabled(False)
        self.pending += 1
        spawn(self._plan(dict(self.choices)))

    async def _plan(self, choices: dict[str, str | None]) -> None:
        try:
            rows, problems = await self.engine.plan_maintenance(self.server, choices)
        except Exception as exc:  # the dialog must still say something
            rows, problems = [], [Problem(Code.PLAN_FAILED, f"Could not plan: {exc}")]
        if not shiboken6.isValid(self):
            return
        self.pending -= 1
        if choices != self.choices:
            return  # the operator changed a choice meanwhile: that plan follows
        self.rows, self.problems = rows, problems
        self._fill()

    def blocked(self) -> list[Evacuation]:
        return [r for r in self.rows if r.destination is None and r.problems]

    def _fill(self) -> None:
        snap = self.engine.snapshot()
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            name = QTableWidgetItem(row.vm.name)
            name.setData(Qt.ItemDataRole.UserRole, row.vm.uuid)
            self.table.setItem(i, 0, name)
            if row.vm.is_running:
                combo = QComboBox(self.table)
                combo.setAccessibleName(f"Destination of {row.vm.name}")
                for other in sorted(snap.servers):
                    if other != self.server:
                        combo.addItem(other, other)
                combo.addItem(LEAVE, LEAVE_KEY)
                if row.destination is not None:
                    data: str | None = row.destination
                elif row.chosen and not row.problems:
                    data = LEAVE_KEY
                else:  # no server can take it, or the one picked cannot
                    data = self.choices.get(row.vm.uuid)
                combo.setCurrentIndex(combo.findData(data) if data else -1)
                combo.currentIndexChanged.connect(
                    lambda _i, c=combo, u=row.vm.uuid: self._choose(u, c.currentData()))
                self.table.setCellWidget(i, 1, combo)
            else:
                self.table.setItem(i, 1, QTableWidgetItem("—"))
            status = self._status(row)
            item = QTableWidgetItem(status)
            item.setToolTip(status)
            self.table.setItem(i, 2, item)
        self.table.resizeColumnsToContents()
        moving = sum(1 for r in self.rows if r.moves)
        refused = blocking(self.problems)
        if self.blocked():
            self.summary.setText(f"{len(self.blocked())} running VM(s) cannot leave "
                                 f"'{self.server}': fix what stops them, or choose "
                                 f"\"{LEAVE}\".")
        elif refused:
            self.summary.setText(" ".join(p.message for p in refused))
        else:
            self.summary.setText(f"{moving} VM(s) will be migrated; the server then enters "
                                 "maintenance mode.")
        self.start.setEnabled(not self.blocked() and not refused)

    @staticmethod
    def _status(row: Evacuation) -> str:
        if row.destination is not None:
            why = "; ".join(row.rating.reasons) if row.rating else ""
            return ("Chosen: " if row.chosen else "Best server: ") + why
        return row.reason[:1].upper() + row.reason[1:]

    def _choose(self, uuid: str, data: str | None) -> None:
        self.choices[uuid] = None if data in (None, LEAVE_KEY) else data
        self.replan()

    # ---- go ---------------------------------------------------------------------------------
    def _enter(self) -> None:
        if self.pending or self.blocked():
            return
        self.jobs = list(self.engine.enter_maintenance(self.server, self.rows,
                                                       self.parallel.value()))
        self.accept()


def exit_maintenance(engine: Engine, server: str, parent: QWidget | None) -> QMessageBox:
    """Ask whether the VMs that left come back, then take the server out of maintenance."""
    back = engine.evacuated_from(server)
    text = f"Take '{server}' out of maintenance mode?"
    if back:
        text += (f"\n\n{len(back)} VM(s) left it when it entered maintenance mode: "
                 + ", ".join(v.name for v in back) + ". Migrate them back now?")
    buttons = (QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
               | QMessageBox.StandardButton.Cancel) if back else (
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
    box = QMessageBox(QMessageBox.Icon.Question, "Exit Maintenance Mode", text, buttons, parent)
    box.setObjectName("exitMaintenance")
    box.setDefaultButton(QMessageBox.StandardButton.Yes)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def finished(_result: int) -> None:
        clicked = box.standardButton(box.clickedButton())
        if clicked is QMessageBox.StandardButton.Cancel:
            return
        spawn(engine.exit_maintenance(
            server, bring_back=bool(back) and clicked is QMessageBox.StandardButton.Yes))

    box.finished.connect(finished)
    box.open()
    return box
