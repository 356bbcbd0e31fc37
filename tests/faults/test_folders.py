"""Folders on libvirt's test driver: a VM's folder is its own metadata; a folder it leaves,
or one made empty, stays (kept beside the undo log) for this engine and the next, until it
is deleted; renaming and deleting a folder rewrite the folder of each VM in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.testdriver import driver_domain
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.engine import Engine


@pytest.fixture
def one_vm(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with driver_domain("fold", start=False) as (tag, uuid):
        inventory = tmp_path / "inventory.toml"
        inventory.write_text(f'[[servers]]\nname = "td"\nuri = "test:///default?folders={tag}"\n')
        yield inventory, uuid


def test_folders_outlive_their_vms_and_rename_and_delete_rewrite_them(
        one_vm: tuple[Path, str], run: Any, tmp_path: Path) -> None:
    inventory, uuid = one_vm
    key = ("td", uuid)

    def folder(engine: Engine) -> str:
        vm = engine.snapshot().vm(key)
        assert vm is not None
        return vm.folder

    async def first() -> tuple[str, frozenset[str]]:
        engine = Engine(load_inventory(inventory), state_dir=tmp_path / "state")
        await engine.start(watch=False)
        try:
            assert engine.add_folder("Empty/") == "/Empty"
            await engine.set_folder(key, "Web/Frontend")  # written as "/Web/Frontend"
            await engine.set_folder(key, "/Databases")
            return folder(engine), engine.folders()
        finally:
            await engine.close()

    assert run(first(), 30) == ("/Databases", {"/Empty", "/Web/Frontend"})

    async def next_engine() -> list[Any]:
        engine = Engine(load_inventory(inventory), state_dir=tmp_path / "state")
        await engine.start(watch=False)
        try:
            seen: list[Any] = [engine.folders()]  # kept from the engine before
            await engine.rename_folder("/Databases", "/Data")
            seen += [folder(engine), engine.folders()]
            await engine.set_folder(key, "/Data/Prod")
            assert await engine.delete_folder("/Data") == 1
            seen += [folder(engine), engine.folders()]
            return seen
        finally:
            await engine.close()

    assert run(next_engine(), 30) == [
        {"/Empty", "/Web/Frontend"},
        "/Data", {"/Empty", "/Web/Frontend", "/Data"},
        "", {"/Empty", "/Web/Frontend"},
    ]
