"""Pool ▸ Properties and Storage ▸ Set as Default SR in the console: offered where they
apply, refused with the reason where not, and written into the inventory file with the
rest of it as it was; and a disabled command's tooltip saying why. (Which SR can be a
default: tests/unit/test_commands.py; the engine's side on the test driver:
tests/faults/test_servers.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QDialogButtonBox, QMenu

from tests.ui.test_server_menu import INVENTORY, fake_of, keep_the_loop, window  # noqa: F401
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.ui.add_server import set_default_sr_text
from xencenter_lite.ui.main_window import MainWindow
from xencenter_lite.ui.pool_storage import PoolPropertiesDialog


def sr_key(win: MainWindow, server: str, name: str) -> Any:
    sr = win.engine.snapshot().sr(server, name)
    assert sr is not None
    return ("sr", (server, sr.uuid))


def test_set_as_default_sr_writes_the_pool_or_server_entry() -> None:
    text = set_default_sr_text(INVENTORY, "pool", "Production", "Local storage")
    assert load_inventory_text(text).pools[0].default_sr == "Local storage"
    again = set_default_sr_text(text, "pool", "Production", "Shared storage")  # replaced
    assert again.count("default_sr") == 1 and 'default_sr = "Shared storage"' in again
    text = set_default_sr_text(INVENTORY, "server", "lab-b1", "Fast storage")
    inv = load_inventory_text(text)
    server = inv.server("lab-b1")
    assert server is not None and server.default_sr == "Fast storage"
    assert text.startswith("# the lab, by hand\n")
    assert text.replace('default_sr = "Fast storage"\n', "") == INVENTORY


def load_inventory_text(text: str) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "inventory.toml"
        path.write_text(text)
        return load_inventory(path)


def test_the_storage_menu_sets_a_standalone_servers_default_sr(
        window: MainWindow) -> None:  # noqa: F811
    fake = fake_of(window)
    path = Path(fake.inventory.path)
    key = sr_key(window, "lab-b1", "Local storage")
    assert window.select(key)
    # lab-b1's default already: refused, saying so.
    assert not window.set_default_sr_action.isEnabled()
    assert window.set_default_sr_action.toolTip() == \
        "'Local storage' is already the default SR of 'lab-b1'"
    key = sr_key(window, "lab-b1", "Fast storage")
    assert window.select(key)
    menu: QMenu = window.resources.context_menu(key)
    assert [a.text() for a in menu.actions()] == ["Set as &Default SR"]
    assert window.set_default_sr_action.isEnabled()
    assert window.set_default_sr() == "'Fast storage' is now the default SR of 'lab-b1'."
    server = load_inventory(path).server("lab-b1")
    assert server is not None and server.default_sr == "Fast storage"
    assert fake.snapshot().servers["lab-b1"].default_sr == "Fast storage"
    assert not window.set_default_sr_action.isEnabled()  # it is the default now


def test_pool_properties_changes_the_pools_default_sr(window: MainWindow) -> None:  # noqa: F811
    fake = fake_of(window)
    path = Path(fake.inventory.path)
    assert window.select(("pool", "Production"))
    menu: QMenu = window.resources.context_menu(("pool", "Production"))
    assert [a.text() for a in menu.actions()] == ["&Properties…"]
    dialog = window.open_pool_properties()
    assert isinstance(dialog, PoolPropertiesDialog)
    combo = dialog.default_sr
    # The SRs every member has: the shared one (its default now) and "Local storage".
    assert [combo.itemData(i) for i in range(combo.count())] == ["Local storage",
                                                                 "Shared storage"]
    assert combo.currentData() == "Shared storage"
    combo.setCurrentIndex(combo.findData("Local storage"))
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert load_inventory(path).pools[0].default_sr == "Local storage"
    assert fake.snapshot().pools["Production"].default_sr == "Local storage"
    assert not dialog.isVisible()


def test_a_disabled_vm_command_says_why_in_its_tooltip(window: MainWindow) -> None:  # noqa: F811
    web = next(v for v in window.engine.snapshot().vms if v.name == "web-1")
    assert window.select(("vm", web.key))
    assert not window.copy_action.isEnabled()
    assert window.copy_action.toolTip() == \
        "'web-1' is running: a VM is copied halted; shut it down first"
    build = next(v for v in window.engine.snapshot().vms if v.name == "build-1")
    assert window.select(("vm", build.key))
    assert window.copy_action.isEnabled()
    assert window.copy_action.toolTip().startswith("A new halted VM")  # its own words again
