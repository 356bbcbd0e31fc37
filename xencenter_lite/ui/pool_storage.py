"""Pool ▸ Properties and Storage ▸ Set as Default SR: the default SR a pool's (or a
standalone server's) migrations and copies use when they name none, kept in the inventory.

Both ask core.commands whether the SR can be the default (so the menus, the context menus
and the dialog agree), write the inventory file as text (the operator's comments stay;
read back before it is replaced) and then tell the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from xencenter_lite.core.commands import can_set_default_sr, default_sr_owner
from xencenter_lite.core.inventory import InventoryError
from xencenter_lite.core.model import SR, Pool, Snapshot
from xencenter_lite.ui.add_server import AddServerError, set_default_sr_in_inventory


def make_default(engine: Any, sr: SR) -> tuple[bool, str]:
    """Make `sr` the default SR of its pool or standalone server, in the inventory file and
    the engine. Returns whether it did, and what happened in words (also when refused)."""
    snap = engine.snapshot()
    verdict = can_set_default_sr(snap, sr)
    owner = default_sr_owner(snap, sr)
    if not verdict.ok:
        return False, f"The default SR of {owner} was not changed: {verdict.reason}."
    try:
        set_default_sr_in_inventory(Path(engine.inventory.path), owner.kind, owner.name,
                                    sr.name)
    except (AddServerError, InventoryError, OSError) as exc:
        return False, f"The default SR of {owner} was not changed: {exc}"
    engine.set_default_sr(owner.kind, owner.name, sr.name)
    return True, f"'{sr.name}' is now the default SR of {owner}."


def pool_sr_choices(snap: Snapshot, pool: Pool) -> list[SR]:
    """The SRs (one per name, as the first member sees it) that can be the pool's default
    SR, the current one included."""
    first = pool.members[0] if pool.members else None
    out = []
    for sr in (snap.srs_on(first) if first else []):
        if sr.name == pool.default_sr or can_set_default_sr(snap, sr).ok:
            out.append(sr)
    return sorted(out, key=lambda s: s.name.lower())


class PoolPropertiesDialog(QDialog):
    """A pool's members and its default SR (the one thing here that can be changed)."""

    def __init__(self, engine: Any, pool: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("poolProperties")
        self.setWindowTitle(f"'{pool}' Properties")
        self.engine = engine
        self.pool_name = pool
        snap = engine.snapshot()
        p = snap.pools[pool]
        form = QFormLayout()
        members = ", ".join(
            m + ("" if m in snap.servers and snap.servers[m].connected else " (not connected)")
            for m in p.members)
        form.addRow("Name:", QLabel(pool))
        form.addRow("Servers:", QLabel(members or "(none)"))
        form.addRow("High availability:", QLabel("On" if p.ha_enabled else "Off"))
        self.default_sr = QComboBox(self)
        self.default_sr.setObjectName("poolDefaultSr")
        self.default_sr.setAccessibleName("Default SR")
        self.choices = pool_sr_choices(snap, p)
        if p.default_sr is None:
            self.default_sr.addItem("(none: each migration names its SR)", None)
        for sr in self.choices:
            self.default_sr.addItem(f"{sr.name} ({'shared' if sr.shared else 'on each server'})",
                                    sr.name)
        current = self.default_sr.findData(p.default_sr)
        self.default_sr.setCurrentIndex(max(current, 0))
        form.addRow("Default SR:", self.default_sr)
        self.message = QLabel(self)
        self.message.setObjectName("poolPropertiesMessage")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel, parent=self)
        self.buttons.accepted.connect(self.apply)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)

    def apply(self) -> None:
        chosen = self.default_sr.currentData()
        snap = self.engine.snapshot()
        pool = snap.pools.get(self.pool_name)
        if pool is None or chosen is None or chosen == pool.default_sr:
            self.accept()  # nothing changed
            return
        sr = next((s for s in self.choices if s.name == chosen), None)
        assert sr is not None
        now = snap.sr(sr.server, sr.name) or sr
        changed, text = make_default(self.engine, now)
        if changed:
            self.accept()
        else:
            self.message.setText(text)  # stay open: the operator reads why
