"""The Destination page: the pool or standalone server the VMs go to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QStyle,
    QTreeWidget,
    QTreeWidgetItem,
)

from xencenter_lite.core.reasons import short_reason
from xencenter_lite.ui.wizard.common import (
    ADD_SERVER,
    Entry,
    Target,
    WizardPage,
    fill_combo,
)

if TYPE_CHECKING:
    from xencenter_lite.ui.wizard.migrate_wizard import MigrateWizard


class DestinationPage(WizardPage):
    def __init__(self, wizard: MigrateWizard) -> None:
        super().__init__(wizard, "destinationPage",
                         "Select the destination pool or standalone server",
                         "The VM can run on any server of a pool, or on a standalone server.")
        form = QFormLayout()
        self.combo = QComboBox()
        self.combo.setObjectName("destinationCombo")
        self.combo.setPlaceholderText("Choose a pool or standalone server")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.combo.setMinimumWidth(320)
        form.addRow("&Destination:", self.combo)
        self.layout_.addLayout(form)
        self.reason = QLabel()
        self.reason.setObjectName("destinationReason")
        self.reason.setWordWrap(True)
        self.reason.hide()
        self.layout_.addWidget(self.reason)
        self.recommendation = QLabel()
        self.recommendation.setObjectName("destinationRecommendation")
        self.recommendation.setWordWrap(True)
        self.recommendation.hide()
        self.layout_.addWidget(self.recommendation)
        self.layout_.addWidget(QLabel("VMs to migrate:"))
        self.grid = QTreeWidget()
        self.grid.setObjectName("vmGrid")
        self.grid.setHeaderLabels(["VM", "Current server"])
        self.grid.setRootIsDecorated(False)
        snap = wizard.engine.snapshot()
        for key in wizard.vm_keys:
            vm = snap.vm(key)
            QTreeWidgetItem(self.grid, [wizard.names[key], vm.server if vm else key[0]])
        self.grid.setColumnWidth(0, 200)
        self.layout_.addWidget(self.grid)
        self.finish_layout()
        self._last = -1
        self._rebuild()
        self.combo.currentIndexChanged.connect(self._picked)
        wizard.checksChanged.connect(self._refresh)
        wizard.targetsChanged.connect(self._rebuild)

    def _preferred_target(self) -> Target | None:
        pref = self.w.preferred
        return next((t for t in self.w.targets() if pref == t.name or pref in t.members), None)

    def _rebuild(self) -> None:
        targets = self.w.targets()
        current = self.w.target or self._preferred_target()
        if current is None and len(targets) == 1:
            current = targets[0]
        icons = {True: QStyle.StandardPixmap.SP_DirIcon,
                 False: QStyle.StandardPixmap.SP_ComputerIcon}
        fill_combo(self.combo, [Entry(t.name, t) for t in targets]
                   + [Entry(ADD_SERVER, ADD_SERVER)], current)
        model = self.combo.model()
        assert isinstance(model, QStandardItemModel)
        for i, t in enumerate(targets):
            model.item(i).setIcon(self.style().standardIcon(icons[t.is_pool]))
        self._last = self.combo.currentIndex()
        self.w.set_target(current if current in targets else None)
        self._refresh()

    def _refresh(self) -> None:
        """Show each entry's check result; pick the only usable entry if none is chosen."""
        model = self.combo.model()
        assert isinstance(model, QStandardItemModel)
        usable, pending = [], False
        for i in range(model.rowCount()):
            target = model.item(i).data(Qt.ItemDataRole.UserRole)
            if not isinstance(target, Target):
                continue
            checked, why = self.w.target_state(target)
            pending |= not checked
            item = model.item(i)
            if not checked:
                item.setText(f"{target.name} (waiting…)")
            elif why is not None:
                item.setText(f"{target.name} - {short_reason(why)}")
            else:
                item.setText(target.name)
                usable.append(i)
            item.setEnabled(why is None)
            item.setToolTip(why.message if why else "")
        if not pending:
            targets = [model.item(i).data(Qt.ItemDataRole.UserRole) for i in usable]
            best, advice = self.w.recommended_target(targets)
            self.recommendation.setText(advice)
            self.recommendation.setVisible(bool(advice))
            if self.combo.currentIndex() < 0 and usable:
                pick = usable[targets.index(best)] if best in targets else (
                    usable[0] if len(usable) == 1 else -1)
                if pick >= 0:
                    self.combo.setCurrentIndex(pick)
        self._show_reason()
        self.changed()

    def _picked(self, index: int) -> None:
        data = self.combo.itemData(index)
        if not isinstance(data, Target) and index >= 0:
            with QSignalBlocker(self.combo):
                self.combo.setCurrentIndex(self._last)
            self.w.addServerRequested.emit()
            return
        self._last = index
        self.w.set_target(data if isinstance(data, Target) else None)
        self._show_reason()
        self.changed()

    def _show_reason(self) -> None:
        target = self.w.target
        why = self.w.target_state(target)[1] if target else None
        self.reason.setText(why.message if why else "")
        self.reason.setVisible(why is not None)

    def isComplete(self) -> bool:
        target = self.w.target
        return target is not None and self.w.target_state(target) == (True, None)

    def validatePage(self) -> bool:
        if not super().validatePage():
            return False
        self.w.choose_default_homes()
        return True
