"""Memory settings of one VM: its Dynamic Memory Control range, and for a running VM the memory
to give it now (XenCenter's ballooning dialog).

The engine checks and applies both; what it refuses is shown here and the dialog stays open.
"""

from __future__ import annotations

from typing import Any

import shiboken6
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from xencenter_lite.core.checks import dynamic_range_problem
from xencenter_lite.core.model import Snapshot
from xencenter_lite.ui.common import format_size, problem_label, show_non_modal, spawn
from xencenter_lite.ui.resources import follow_engine

MIB = 1024 * 1024

# What a memory field takes as typed (1 TiB): a value out of the VM's bounds is shown as
# typed, with what is wrong, and OK waits for it to be fixed; it is never cut silently.
TYPED_MAX_MIB = 1024 * 1024


def mib_spin(name: str, label: str, value: int, high: int = TYPED_MAX_MIB) -> QSpinBox:
    spin = QSpinBox()
    spin.setObjectName(name)
    spin.setAccessibleName(label)
    spin.setRange(0, high)
    spin.setSuffix(" MiB")
    spin.setValue(value)
    return spin


class MemoryDialog(QDialog):
    def __init__(self, engine: Any, vm_key: tuple[str, str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("memoryDialog")
        self.setAccessibleName("Memory settings")
        self.engine = engine
        self.vm_key = vm_key
        vm = engine.snapshot().vm(vm_key)
        self.vm_name = vm.name if vm else vm_key[1]
        static_bytes = vm.memory if vm else MIB
        self.static_bytes = static_bytes
        static = max(1, static_bytes // MIB)
        self.setWindowTitle(f"Memory Settings - {self.vm_name}")

        layout = QVBoxLayout(self)
        intro = QLabel(f"Dynamic Memory Control may squeeze '{self.vm_name}' down to its "
                       "dynamic minimum when another VM needs the memory, and lets it grow "
                       "up to its dynamic maximum.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        form.addRow("Static maximum:", QLabel(f"{static} MiB ({format_size(static_bytes)})"))
        self.current = QLabel()
        self.current.setObjectName("currentMemory")
        form.addRow("Current memory:", self.current)
        low = vm.dynamic_min if vm and vm.dynamic_min is not None else static * MIB
        high = vm.dynamic_max if vm and vm.dynamic_max is not None else static * MIB
        quarter = -(-static // 4)
        self.min_spin = mib_spin("dynamicMinSpin", "Dynamic minimum", low // MIB)
        self.min_spin.setToolTip(f"From {quarter} MiB (a quarter of the static maximum) up to "
                                 "the dynamic maximum")
        self.max_spin = mib_spin("dynamicMaxSpin", "Dynamic maximum", high // MIB)
        self.max_spin.setToolTip(f"From the dynamic minimum up to {static} MiB (the static "
                                 "maximum)")
        form.addRow("Dynamic mi&nimum:", self.min_spin)
        form.addRow("Dynamic ma&ximum:", self.max_spin)
        self.now_spin: QSpinBox | None = None
        if vm is not None and vm.is_running:
            self.now_spin = mib_spin("memoryNowSpin", "Memory now", vm.memory_in_use // MIB,
                                     static)
            self.now_spin.setToolTip("What the balloon leaves the VM now, within the range")
            form.addRow("Memory &now:", self.now_spin)
        self.min_spin.valueChanged.connect(self._range_changed)
        self.max_spin.valueChanged.connect(self._range_changed)
        self._now_shown = self.now_spin.value() if self.now_spin else None
        layout.addLayout(form)
        self.problem = problem_label("memoryProblem")
        layout.addWidget(self.problem)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setObjectName("memoryOkButton")
        buttons.accepted.connect(self._ok)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(440, self.sizeHint().height())
        self._busy = False
        self._gone = vm is None
        self._range_changed()
        follow_engine(engine, self._on_snapshot)
        self._on_snapshot(engine.snapshot())

    def open(self) -> None:
        """Show without blocking anything else; once closed, the dialog goes away."""
        show_non_modal(self)

    def _on_snapshot(self, snap: Snapshot) -> None:
        vm = snap.vm(self.vm_key)
        self._gone = vm is None
        if vm is None:
            self.current.setText("(gone)")
            self.show_problem(f"'{self.vm_name}' no longer exists on '{self.vm_key[0]}'.")
        else:
            self.current.setText(f"{vm.memory_in_use // MIB} MiB ({format_size(vm.memory_in_use)})"
                                 if vm.is_running else "(not running)")
        self._enable_ok()

    def range_problem(self) -> str | None:
        """What is wrong with the range as typed (the engine's own rule), None if nothing."""
        return dynamic_range_problem(self.vm_name, self.static_bytes,
                                     self.min_spin.value() * MIB, self.max_spin.value() * MIB)

    def _range_changed(self) -> None:
        """Say at once what is wrong with the range; memory now stays inside a good one."""
        problem = self.range_problem()
        if not self._gone:
            self.show_problem(problem)
        if problem is None and self.now_spin is not None:
            self.now_spin.setRange(self.min_spin.value(), self.max_spin.value())
        self._enable_ok()

    def _enable_ok(self) -> None:
        self.ok_button.setEnabled(not self._gone and not self._busy
                                  and self.range_problem() is None)

    def show_problem(self, text: str | None) -> None:
        self.problem.setText(text or "")
        self.problem.setVisible(bool(text))

    def _ok(self) -> None:
        if not self._busy:
            spawn(self._apply())

    async def _apply(self) -> None:
        self._busy = True
        self.ok_button.setEnabled(False)
        self.show_problem(None)
        now = self.now_spin.value() if self.now_spin else None
        try:
            await self.engine.set_dynamic_memory(self.vm_key, self.min_spin.value() * MIB,
                                                 self.max_spin.value() * MIB)
            if now is not None and now != self._now_shown:
                await self.engine.set_memory(self.vm_key, now * MIB)
        except Exception as exc:  # the engine's refusal (ValueError) or libvirt's error
            if shiboken6.isValid(self):
                self._busy = False
                self.show_problem(str(exc))
                self._enable_ok()
            return
        if shiboken6.isValid(self):
            self._busy = False
            self.accept()
