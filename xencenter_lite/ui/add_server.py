"""File ▸ Add Server…: a new libvirt server in the inventory file and in the running console.

The server is appended to the file as text (the operator's comments and layout stay), the
result is read back with load_inventory before anything is written, and a refusal names the
field to fix. Then the console connects to the URI once (on the engine's worker, the loop
goes on) and asks the host what it is: a server the inventory already has under another
name is refused, naming it; one that cannot be reached is reported, and added (shown
disconnected) only if the operator presses OK again. Only then is the file written and the
engine told to manage it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from xencenter_lite.core.inventory import (
    InventoryConfig,
    InventoryError,
    ServerConfig,
    load_inventory,
    redact_uri,
)
from xencenter_lite.ui.common import spawn

if TYPE_CHECKING:
    from xencenter_lite.engine import Engine

NO_POOL = "(none: standalone server)"


class AddServerError(Exception):
    """Bad input; the message starts with the field to fix."""


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def server_block(name: str, uri: str, addresses: dict[str, str]) -> str:
    lines = ["", "[[servers]]", f"name = {_toml_str(name)}", f"uri = {_toml_str(uri)}"]
    if addresses:
        lines.append("[servers.networks]")
        lines += [f"{_toml_str(net)} = {_toml_str(addr)}" for net, addr in addresses.items()]
    return "\n".join(lines) + "\n"


def add_to_pool(text: str, pool: str, server: str) -> str:
    """`text` with `server` appended to the members of [[pools]] `pool`."""
    sections = re.split(r"(?m)^(?=\s*\[)", text)
    for i, section in enumerate(sections):
        if not re.match(r"\s*\[\[pools\]\]", section):
            continue
        if not re.search(rf"(?m)^\s*name\s*=\s*{re.escape(_toml_str(pool))}\s*$", section):
            continue
        new, count = re.subn(r"(members\s*=\s*\[[^\]]*?)\s*,?\s*\]",
                             lambda m: f"{m.group(1)}, {_toml_str(server)}]", section, count=1)
        if count:
            sections[i] = new
            return "".join(sections)
    raise AddServerError(f"Pool: cannot find the members of pool '{pool}' in the inventory "
                         "file; add the server to it by hand")


def _names(section: str) -> str | None:
    m = re.search(r"(?m)^\s*name\s*=\s*(\"(?:[^\"\\]|\\.)*\"|'[^']*')\s*(?:#.*)?$", section)
    if m is None:
        return None
    value = tomllib.loads(f"v = {m.group(1)}")["v"]
    return value if isinstance(value, str) else None


def remove_server_text(text: str, server: str) -> str:
    """`text` without [[servers]] `server` (and its [servers.*] tables), and without it in
    any pool's members; a pool it leaves empty goes too. Everything else stays as written."""
    sections = re.split(r"(?m)^(?=[ \t]*\[)", text)
    out: list[str] = []
    dropping = False
    found = False
    for section in sections:
        header = section.lstrip()
        if header.startswith("[[servers]]"):
            dropping = _names(section) == server
            found = found or dropping
        elif header.startswith("[servers."):
            pass  # a sub-table of the [[servers]] entry above it: goes with it
        else:
            dropping = False
        if dropping:
            continue
        if header.startswith("[[pools]]"):
            section = _without_member(section, server)
            if section is None:
                continue
        out.append(section)
    if not found:
        raise AddServerError(f"Inventory file: no [[servers]] entry named '{server}'; remove "
                             "it by hand")
    return "".join(out)


def _without_member(section: str, server: str) -> str | None:
    """A [[pools]] section with `server` out of its members (None: no member is left)."""
    m = re.search(r"(members\s*=\s*)\[([^\]]*)\]", section)
    if m is None:
        return section
    members = tomllib.loads(f"v = [{m.group(2)}]")["v"]
    if server not in members:
        return section
    left = [x for x in members if x != server]
    if not left:
        return None
    return (section[:m.start()] + m.group(1) + "[" + ", ".join(_toml_str(x) for x in left)
            + "]" + section[m.end():])


def remove_from_inventory(path: Path, server: str) -> InventoryConfig:
    """Take `server` out of the inventory file; nothing is written if the result would not
    read back as an inventory without it."""
    text = remove_server_text(path.read_text(encoding="utf-8"), server)
    try:
        inventory = validated(text, path)
    except InventoryError as exc:
        raise AddServerError(f"Inventory file: without '{server}' it would not read: {exc}; "
                             "remove it by hand") from None
    if inventory.server(server) is not None:
        raise AddServerError(f"Inventory file: '{server}' is listed more than once; remove it "
                             "by hand")
    write_inventory(path, text)
    return inventory


def set_default_sr_text(text: str, kind: str, name: str, sr: str) -> str:
    """`text` with `default_sr = sr` in [[pools]] (kind "pool") or [[servers]] (kind
    "server") `name`: the line it has replaced, else one added after its name. Everything
    else stays as written."""
    header = "[[pools]]" if kind == "pool" else "[[servers]]"
    sections = re.split(r"(?m)^(?=[ \t]*\[)", text)
    for i, section in enumerate(sections):
        if not section.lstrip().startswith(header) or _names(section) != name:
            continue
        line = f"default_sr = {_toml_str(sr)}"
        new, count = re.subn(r"(?m)^([ \t]*)default_sr\s*=.*$",
                             lambda m, line=line: m.group(1) + line, section, count=1)
        if not count:
            new = re.sub(r"(?m)^([ \t]*name\s*=.*)$",
                         lambda m, line=line: m.group(1) + "\n" + line, section, count=1)
        sections[i] = new
        return "".join(sections)
    raise AddServerError(f"Inventory file: no {header} entry named '{name}'; set its "
                         f"default_sr by hand")


def set_default_sr_in_inventory(path: Path, kind: str, name: str, sr: str) -> InventoryConfig:
    """Write `sr` as the default SR of pool or server `name` into the inventory file; nothing
    is written unless the result reads back with it."""
    text = set_default_sr_text(path.read_text(encoding="utf-8"), kind, name, sr)
    try:
        inventory = validated(text, path)
    except InventoryError as exc:
        raise AddServerError(f"Inventory file: with the new default SR it would not read: "
                             f"{exc}; set it by hand") from None
    owner = (next((p for p in inventory.pools if p.name == name), None) if kind == "pool"
             else inventory.server(name))
    if owner is None or owner.default_sr != sr:
        raise AddServerError(f"Inventory file: the default SR of '{name}' did not read back "
                             f"as '{sr}'; set it by hand")
    write_inventory(path, text)
    return inventory


_FIELD = re.compile(r"servers\[\d+\]\.(\w+)(?:\.(\w+))?: (.*)", re.S)


def _field_message(exc: InventoryError) -> str:
    m = _FIELD.search(str(exc))
    if m is None:
        return f"Inventory file: {exc}"
    key, sub, problem = m.groups()
    label = {"name": "Name", "uri": "URI"}.get(key, key)
    if key == "networks" and sub:
        label = f"Address on '{sub}'"
    return f"{label}: {problem}"


def validated(text: str, path: Path) -> InventoryConfig:
    """Read `text` as the inventory would be read, without touching `path`."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", dir=path.parent, delete=False,
                                     encoding="utf-8") as tmp:
        tmp.write(text)
    try:
        return load_inventory(tmp.name)
    finally:
        os.unlink(tmp.name)


def append_server(path: Path, name: str, uri: str, addresses: dict[str, str],
                  pool: str | None) -> InventoryConfig:
    """Write the server into the inventory file; nothing is written if anything is wrong."""
    text, inventory = prepare_server(path, name, uri, addresses, pool)
    write_inventory(path, text)
    return inventory


def prepare_server(path: Path, name: str, uri: str, addresses: dict[str, str],
                   pool: str | None) -> tuple[str, InventoryConfig]:
    """The inventory file's new text with the server in it, read back as the inventory;
    raises AddServerError (naming the field) if anything is wrong. Writes nothing."""
    name, uri = name.strip(), uri.strip()
    if not name:
        raise AddServerError("Name: enter the server's name")
    if not uri:
        raise AddServerError('URI: enter a libvirt URI, like "qemu+ssh://root@host/system"')
    addresses = {n: a.strip() for n, a in addresses.items() if a.strip()}
    for net, addr in addresses.items():
        if any(c.isspace() for c in addr):
            raise AddServerError(f"Address on '{net}': an address has no spaces")
    old = path.read_text(encoding="utf-8")
    current = load_inventory(path)
    if current.server(name) is not None:
        raise AddServerError(f"Name: a server named '{name}' is already in the inventory")
    text = old + ("" if old.endswith("\n") else "\n") + server_block(name, uri, addresses)
    if pool:
        text = add_to_pool(text, pool, name)
    try:
        inventory = validated(text, path)
    except InventoryError as exc:
        raise AddServerError(_field_message(exc)) from None
    joined = inventory.pool_of(name)
    if (joined.name if joined else None) != (pool or None):
        raise AddServerError(f"Pool: the server did not end up in pool '{pool}'")
    return text, inventory


def write_inventory(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class AddServerDialog(QDialog):
    """Name, URI, optional pool, and an address on each network the inventory knows."""

    def __init__(self, engine: Engine, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("addServerDialog")
        self.setWindowTitle("Add New Server")
        self.engine = engine
        self.name = QLineEdit(self)
        self.name.setObjectName("serverName")
        self.uri = QLineEdit(self)
        self.uri.setObjectName("serverUri")
        self.uri.setPlaceholderText("qemu+ssh://root@host/system")
        self.pool = QComboBox(self)
        self.pool.setObjectName("serverPool")
        self.pool.addItem(NO_POOL, None)
        for p in engine.inventory.pools:
            self.pool.addItem(p.name, p.name)
        self.addresses: dict[str, QLineEdit] = {}
        form = QFormLayout()
        form.addRow("&Name:", self.name)
        form.addRow("libvirt &URI:", self.uri)
        form.addRow("&Pool to join:", self.pool)
        mgmt = engine.inventory.management_network
        for net in engine.inventory.networks:
            edit = QLineEdit(self)
            edit.setObjectName(f"address_{net.name}")
            edit.setPlaceholderText("address (optional)")
            self.addresses[net.name] = edit
            role = "management" if net.name == mgmt else "migration"
            form.addRow(f"Address on '{net.name}' ({role}):", edit)
        self.error = QLabel(self)
        self.error.setObjectName("errorLabel")
        self.error.setStyleSheet("color: #c62828")
        self.error.setWordWrap(True)
        self.status = QLabel(self)
        self.status.setObjectName("statusLabel")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel, self)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"The server is added to {engine.inventory.path}.", self))
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self._unreachable_ok: str | None = None  # a URI the operator chose to add anyway
        self._vetting: asyncio.Task[None] | None = None

    def accept(self) -> None:
        if self._vetting is not None and not self._vetting.done():
            return
        pool = self.pool.currentData()
        path = Path(self.engine.inventory.path)
        try:
            text, inventory = prepare_server(
                path, self.name.text(), self.uri.text(),
                {n: e.text() for n, e in self.addresses.items()}, pool)
        except (AddServerError, InventoryError, OSError) as exc:
            self.error.setText(str(exc))
            return
        config = inventory.server(self.name.text().strip())
        assert config is not None
        self.error.setText("")
        if self._unreachable_ok == config.uri:
            self._add(path, text, config, pool)
            return
        self.status.setText(f"Connecting to {redact_uri(config.uri)}…")
        self._set_busy(True)
        self._vetting = spawn(self._vet_then_add(path, text, config, pool))

    async def _vet_then_add(self, path: Path, text: str, config: ServerConfig,
                            pool: str | None) -> None:
        try:
            found = await self.engine.vet_new_server(config.uri)
        finally:
            self._set_busy(False)
            self.status.setText("")
        if found.same_as is not None:
            self.error.setText(f"URI: this is the server '{found.same_as}' (host UUID "
                               f"{found.host_uuid}), already in the inventory; a server is "
                               "listed once")
            return
        if not found.reachable:
            self._unreachable_ok = config.uri
            self.error.setText(f"URI: cannot connect: {found.error}. Check the URI, or press "
                               "OK again to add it anyway (it is shown disconnected until "
                               "it answers)")
            return
        self._add(path, text, config, pool)

    def _add(self, path: Path, text: str, config: ServerConfig, pool: str | None) -> None:
        try:
            write_inventory(path, text)
        except OSError as exc:
            self.error.setText(f"Inventory file: cannot write it ({exc.strerror})")
            return
        spawn(self.engine.add_server(config, pool))
        super().accept()

    def reject(self) -> None:
        if self._vetting is not None and not self._vetting.done():
            self._vetting.cancel()
        super().reject()

    def _set_busy(self, busy: bool) -> None:
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        if ok is not None:
            ok.setEnabled(not busy)
