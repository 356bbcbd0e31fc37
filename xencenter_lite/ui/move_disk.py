"""Move Virtual Disk: live-move one disk of a running VM to another SR of its server.

XenCenter's MoveVirtualDiskDialog: every SR of the server is listed, and the ones that cannot
take the disk stay in the list, disabled, saying why; Move is enabled only on an enabled SR.
The engine does the copy; the job shows up in the Events view.
"""

from __future__ import annotations

from typing import Any

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from xencenter_lite.core.checks import Code, sr_refusal
from xencenter_lite.core.jobs import Job
from xencenter_lite.core.model import Disk, Snapshot
from xencenter_lite.ui.common import format_size, keep_until_closed, problem_label, spawn

# These depend on the SR picked, and the list already says them; the others are about the VM.
SR_CODES = frozenset({Code.SAME_SR, Code.SR_NOT_VISIBLE, Code.SR_UNSUPPORTED,
                      Code.NOT_ENOUGH_SPACE})

def sr_reason(snap: Snapshot, server: str, name: str, need: int,
              current: str | None = None) -> str | None:
    """core.checks.sr_refusal, with sizes written the way the rest of the console writes them."""
    refused = sr_refusal(snap, server, name, need, current)
    sr = snap.sr(server, name)
    if refused is None:
        return None
    if refused[0] is Code.NOT_ENOUGH_SPACE and sr is not None:
        return (f"Not enough space: {format_size(need)} required, "
                f"{format_size(sr.available)} available")
    return refused[1]


def disk_label(disk: Disk) -> str:
    return f"{disk.dev} ({format_size(disk.capacity)} on {disk.sr or 'no SR'})"


class MoveDiskDialog(QDialog):
    def __init__(self, engine: Any, vm_key: tuple[str, str], dev: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("moveDiskDialog")
        self.engine = engine
        self.vm_key = vm_key
        self.job: Job | None = None
        vm = engine.snapshot().vm(vm_key)
        self.vm_name = vm.name if vm else vm_key[1]
        disks = list(vm.hard_disks) if vm else []
        self.dev = dev or (disks[0].dev if disks else None)
        self.setWindowTitle("Move Virtual Disk")

        layout = QVBoxLayout(self)
        how = ("The VM keeps running" if vm is None or vm.is_running else
               "The VM stays halted; the disk is copied and verified")
        intro = QLabel(f"Move a virtual disk of '{self.vm_name}' to another storage "
                       f"repository. {how}; the old disk is removed once the copy is done.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.disk_combo = QComboBox()
        self.disk_combo.setObjectName("diskCombo")
        for d in disks:
            self.disk_combo.addItem(disk_label(d), d.dev)
        self.disk_combo.setCurrentIndex(self.disk_combo.findData(self.dev))
        self.disk_combo.setEnabled(dev is None)
        form.addRow("&Virtual disk:", self.disk_combo)
        layout.addLayout(form)
        layout.addWidget(QLabel("Move it to this storage repository:"))
        self.srs = QListWidget()
        self.srs.setObjectName("srList")
        layout.addWidget(self.srs)
        self.problem = problem_label("moveProblem")
        layout.addWidget(self.problem)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.move_button = buttons.addButton("&Move", QDialogButtonBox.ButtonRole.AcceptRole)
        self.move_button.setObjectName("moveButton")
        buttons.accepted.connect(self._move)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(520, 380)

        self.disk_combo.currentIndexChanged.connect(self._disk_picked)
        self.srs.currentItemChanged.connect(self._update)
        self.fill()
        spawn(self._refresh())

    def open(self) -> None:
        """Show window-modal without blocking the loop; once closed, the dialog goes away."""
        keep_until_closed(self)
        super().open()

    async def _refresh(self) -> None:
        """Free space changes all the time: read the server again, then recount."""
        snap = await self.engine.refresh(self.vm_key[0])
        if shiboken6.isValid(self):
            self.fill(snap)

    def fill(self, snap: Snapshot | None = None) -> None:
        """List every SR of the VM's server, the ones that cannot take the disk disabled."""
        snap = snap or self.engine.snapshot()
        vm = snap.vm(self.vm_key)
        disk = vm.disk(self.dev) if vm and self.dev else None
        chosen = self.chosen_sr()
        self.srs.clear()
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_DriveHDIcon)
        for sr in sorted(snap.srs_on(self.vm_key[0]), key=lambda s: s.name):
            need = disk.capacity if disk else 0
            why = sr_reason(snap, sr.server, sr.name, need, disk.sr if disk else None)
            text = (f"{sr.name} — {why}" if why else
                    f"{sr.name} — {format_size(sr.available)} free of {format_size(sr.capacity)}")
            item = QListWidgetItem(icon, text, self.srs)
            item.setData(Qt.ItemDataRole.UserRole, sr.name)
            if why:
                item.setFlags(item.flags() & ~(Qt.ItemFlag.ItemIsEnabled
                                               | Qt.ItemFlag.ItemIsSelectable))
                item.setToolTip(why)
            elif sr.name == chosen:
                self.srs.setCurrentItem(item)
        self._update()

    def chosen_sr(self) -> str | None:
        item = self.srs.currentItem()
        if item is None or not item.flags() & Qt.ItemFlag.ItemIsEnabled:
            return None
        sr = item.data(Qt.ItemDataRole.UserRole)
        return str(sr) if sr is not None else None

    def _disk_picked(self) -> None:
        self.dev = self.disk_combo.currentData()
        self.fill()

    def _update(self) -> None:
        """Move only to an enabled SR, and only when nothing about the VM stops the move."""
        sr = self.chosen_sr()
        problems = []
        if self.dev is None:
            problems = [f"'{self.vm_name}' has no virtual disk to move."]
        elif self.engine.snapshot().vm(self.vm_key) is None:
            problems = [f"'{self.vm_name}' no longer exists on '{self.vm_key[0]}'."]
        else:
            plan = self.engine.plan_disk_move(self.vm_key, self.dev, sr or "")
            problems = [p.message for p in self.engine.check_disk_move(plan)
                        if p.blocking and p.code not in SR_CODES]
        self.problem.setText(" ".join(problems))
        self.problem.setVisible(bool(problems))
        self.move_button.setEnabled(sr is not None and not problems)

    def _move(self) -> None:
        sr = self.chosen_sr()
        if sr is None or self.dev is None or not self.move_button.isEnabled():
            return
        self.job = self.engine.move_disk(self.vm_key, self.dev, sr)
        self.accept()
