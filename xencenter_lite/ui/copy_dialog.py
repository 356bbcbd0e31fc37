"""Copy VM: XenCenter's CopyVMDialog for a halted VM: the new VM's name, the server it goes
to, and the SR for its disks (every SR of that server listed, the ones that cannot take
the copy disabled, saying why). What stops the copy is said under the choices, and Copy is
enabled only when nothing does. The engine copies; the job shows in the Events view.
"""

from __future__ import annotations

from typing import Any

import shiboken6
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from xencenter_lite.core.checks import Code
from xencenter_lite.core.copy import CopyRequest
from xencenter_lite.core.jobs import Job
from xencenter_lite.core.model import Snapshot
from xencenter_lite.ui.common import format_size, keep_until_closed, problem_label, spawn
from xencenter_lite.ui.move_disk import sr_reason

# Said by the SR list already.
_SR_CODES = frozenset({Code.SR_REFUSED, Code.NO_SR_CHOSEN})


class CopyVmDialog(QDialog):
    def __init__(self, engine: Any, vm_key: tuple[str, str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("copyVmDialog")
        self.engine = engine
        self.vm_key = vm_key
        self.job: Job | None = None
        vm = engine.snapshot().vm(vm_key)
        self.vm_name = vm.name if vm else vm_key[1]
        self.setWindowTitle("Copy VM")

        layout = QVBoxLayout(self)
        intro = QLabel(f"Make a new VM from '{self.vm_name}': its own copies of the disks, a "
                       "new UUID and new MAC addresses, halted. The disks are copied through "
                       "this console and verified.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.name = QLineEdit(f"Copy of {self.vm_name}")
        self.name.setObjectName("copyName")
        form.addRow("&Name:", self.name)
        self.server = QComboBox()
        self.server.setObjectName("copyServer")
        snap = engine.snapshot()
        for name, srv in sorted(snap.servers.items()):
            self.server.addItem(name if srv.connected else f"{name} (not connected)", name)
        self.server.setCurrentIndex(max(0, self.server.findData(vm_key[0])))
        form.addRow("&Server:", self.server)
        self.sr = QComboBox()
        self.sr.setObjectName("copySr")
        form.addRow("Storage &repository:", self.sr)
        layout.addLayout(form)
        self.problem = problem_label("copyProblem")
        layout.addWidget(self.problem)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.copy_button = buttons.addButton("&Copy", QDialogButtonBox.ButtonRole.AcceptRole)
        self.copy_button.setObjectName("copyButton")
        buttons.accepted.connect(self._copy)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(520, 260)

        self.name.textChanged.connect(self._update)
        self.server.currentIndexChanged.connect(lambda _i: self.fill())
        self.sr.currentIndexChanged.connect(lambda _i: self._update())
        self.fill()
        spawn(self._refresh())

    def open(self) -> None:
        """Show window-modal without blocking the loop; once closed, the dialog goes away."""
        keep_until_closed(self)
        super().open()

    async def _refresh(self) -> None:
        snap = await self.engine.refresh(self.destination())
        if shiboken6.isValid(self):
            self.fill(snap)

    def destination(self) -> str:
        return str(self.server.currentData())

    def _need(self, snap: Snapshot) -> int:
        vm = snap.vm(self.vm_key)
        return sum(d.capacity for d in vm.hard_disks) if vm else 0

    def fill(self, snap: Snapshot | None = None) -> None:
        """Every SR of the chosen server; the one the plan would pick first selected."""
        snap = snap or self.engine.snapshot()
        dest = self.destination()
        keep = self.sr.currentData()
        default = None
        if snap.vm(self.vm_key) is not None:
            plan = self.engine.plan_copy(self._request(None))
            default = next((d.target_sr for d in plan.disks), None)
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_DriveHDIcon)
        self.sr.blockSignals(True)
        self.sr.clear()
        for sr in sorted(snap.srs_on(dest), key=lambda s: s.name):
            why = sr_reason(snap, dest, sr.name, self._need(snap))
            text = (f"{sr.name} - {why}" if why else
                    f"{sr.name} - {format_size(sr.available)} free")
            self.sr.addItem(icon, text, sr.name)
            if why:
                item = self.sr.model().item(self.sr.count() - 1)  # type: ignore[attr-defined]
                item.setEnabled(False)
                item.setToolTip(why)
        for wanted in (keep, default):
            i = self.sr.findData(wanted)
            if i >= 0 and self.sr.model().item(i).isEnabled():  # type: ignore[attr-defined]
                self.sr.setCurrentIndex(i)
                break
        self.sr.blockSignals(False)
        self._update()

    def chosen_sr(self) -> str | None:
        i = self.sr.currentIndex()
        if i < 0 or not self.sr.model().item(i).isEnabled():  # type: ignore[attr-defined]
            return None
        return str(self.sr.currentData())

    def _request(self, sr: str | None) -> CopyRequest:
        return CopyRequest(self.vm_key, self.destination(), self.name.text(), sr=sr)

    def _update(self) -> None:
        if self.engine.snapshot().vm(self.vm_key) is None:
            problems = [f"'{self.vm_name}' no longer exists on '{self.vm_key[0]}'."]
        else:
            plan = self.engine.plan_copy(self._request(self.chosen_sr()))
            problems = [p.message for p in self.engine.check_copy(plan)
                        if p.blocking and p.code not in _SR_CODES]
            if self.chosen_sr() is None:
                problems.append("Choose a storage repository that can take the copy.")
        self.problem.setText(" ".join(problems))
        self.problem.setVisible(bool(problems))
        self.copy_button.setEnabled(not problems)
        self.copy_button.setToolTip(" ".join(problems))
        self.name.setAccessibleDescription(self.problem.text())

    def _copy(self) -> None:
        sr = self.chosen_sr()
        if sr is None or not self.copy_button.isEnabled():
            return
        self.job = self.engine.copy(self._request(sr))
        self.accept()
