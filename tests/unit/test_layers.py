"""Import directions between the layers, read from the source with `ast` (nothing imported).

core  - pure: no Qt, no libvirt, nothing from the layers above it;
virt  - the only place that talks to libvirt;
ui    - Qt, but never libvirt or virt directly (it goes through the engine);
lab   - builds servers with system tools, never with libvirt.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import xencenter_lite

PACKAGE_DIR = Path(xencenter_lite.__file__).resolve().parent
ROOT = PACKAGE_DIR.parent

LIBVIRT = ("libvirt", "libvirtaio")
CORE_FORBIDDEN = ("PySide6", "qasync", *LIBVIRT, "xencenter_lite.virt", "xencenter_lite.engine",
                  "xencenter_lite.ui", "xencenter_lite.cli", "xencenter_lite.lab")


@dataclass(frozen=True)
class Import:
    file: str  # relative to the project root
    line: int
    module: str  # absolute dotted name

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: imports {self.module}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(source: str, file: str, module: str, is_package: bool) -> list[Import]:
    """Every module `source` imports, relative imports resolved, `from a import b` counted as
    both a and a.b, and importlib.import_module("x") / __import__("x") with a literal name."""
    tree = ast.parse(source, filename=file)
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(file, node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(Import(file, node.lineno, base))
            found += [Import(file, node.lineno, f"{base}.{a.name}") for a in node.names
                      if a.name != "*"]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant) \
                    and isinstance(arg.value, str):
                found.append(Import(file, node.lineno, arg.value))
    return found


def all_imports() -> list[Import]:
    out: list[Import] = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        out += imports_in(path.read_text(encoding="utf-8"), rel, module_name(path),
                          path.name == "__init__.py")
    return out


def matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(imports: list[Import], under: str, forbidden: tuple[str, ...]) -> list[str]:
    return [str(i) for i in imports if i.file.startswith(under) and matches(i.module, forbidden)]


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


# ---- the scanner itself ---------------------------------------------------------------------
def test_scanner_sees_the_whole_package(imports):
    files = {i.file for i in imports}
    for expected in ("xencenter_lite/core/checks.py", "xencenter_lite/core/plan.py",
                     "xencenter_lite/virt/connection.py",
                     "xencenter_lite/engine/__init__.py", "xencenter_lite/engine/migration.py"):
        assert expected in files
    assert any(i.file == "xencenter_lite/virt/connection.py" and i.module == "libvirt"
               for i in imports)


def test_scanner_finds_every_form_with_its_line():
    source = (
        "import os\n"
        "import libvirt as lv\n"
        "from PySide6.QtCore import QObject\n"
        "from .. import virt\n"
        "from ..engine import Engine\n"
        "def f():\n"
        "    import importlib\n"
        "    importlib.import_module('libvirtaio')\n"
        "    __import__('qasync')\n"
    )
    found = imports_in(source, "xencenter_lite/core/x.py", "xencenter_lite.core.x", False)
    modules = {(i.line, i.module) for i in found}
    assert {(2, "libvirt"), (3, "PySide6.QtCore"), (4, "xencenter_lite.virt"),
            (5, "xencenter_lite.engine"), (8, "libvirtaio"), (9, "qasync")} <= modules
    bad = violations(found, "xencenter_lite/core/", CORE_FORBIDDEN)
    assert "xencenter_lite/core/x.py:2: imports libvirt" in bad
    assert "xencenter_lite/core/x.py:4: imports xencenter_lite.virt" in bad
    assert not any(":1:" in b for b in bad)


def test_relative_import_in_package_init():
    found = imports_in("from .connection import X\n", "xencenter_lite/virt/__init__.py",
                       "xencenter_lite.virt", True)
    assert {i.module for i in found} == {"xencenter_lite.virt.connection",
                                         "xencenter_lite.virt.connection.X"}


# ---- the rules ------------------------------------------------------------------------------
def test_only_virt_imports_libvirt(imports):
    bad = [str(i) for i in imports
           if matches(i.module, LIBVIRT) and not i.file.startswith("xencenter_lite/virt/")]
    assert bad == [], "libvirt outside xencenter_lite/virt/:\n" + "\n".join(bad)


def test_core_is_pure(imports):
    bad = violations(imports, "xencenter_lite/core/", CORE_FORBIDDEN)
    assert bad == [], "forbidden imports in core:\n" + "\n".join(bad)


def test_ui_does_not_touch_libvirt(imports):
    bad = violations(imports, "xencenter_lite/ui/", (*LIBVIRT, "xencenter_lite.virt"))
    assert bad == [], "the UI must go through the engine:\n" + "\n".join(bad)


def test_lab_does_not_import_libvirt(imports):
    bad = violations(imports, "xencenter_lite/lab/", LIBVIRT)
    assert bad == [], "the lab must not use libvirt:\n" + "\n".join(bad)


def test_the_engines_runners_know_servers_only_by_the_link_protocol(imports):
    """The runners depend on virt.link's ServerLink protocol and data; only the façade
    names the libvirt implementation (its default link factory)."""
    bad = [str(i) for i in imports
           if i.file.startswith("xencenter_lite/engine/")
           and i.file != "xencenter_lite/engine/__init__.py"
           and (matches(i.module, ("xencenter_lite.virt.connection", "xencenter_lite.virt.migrate"))
                or i.module == "xencenter_lite.virt.LibvirtLink")]
    assert bad == [], "engine runners must use virt.link only:\n" + "\n".join(bad)


def test_the_link_protocol_is_free_of_libvirt(imports):
    bad = violations(imports, "xencenter_lite/virt/link.py", LIBVIRT)
    assert bad == [], "\n".join(bad)
