"""The integration tests run against the built-in lab: real libvirtd servers in network
namespaces with real QEMU guests, brought up once per test session (root needed)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.integration.labtools import HERE, LAB_CONFIG
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.engine import Engine
from xencenter_lite.lab import Lab, load_lab_config

T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_inventory() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("the integration tests bring up the lab, which needs root: run them as root")
    lab = Lab(load_lab_config(LAB_CONFIG))
    lab.down()  # start from the lab's initial state, whatever an earlier run left
    path = lab.up()
    try:
        yield path
    finally:
        lab.down()


@pytest.fixture(scope="session")
def engine(lab_inventory: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    eng = Engine(load_inventory(lab_inventory), poll_interval=2.0)
    loop.run_until_complete(eng.start())
    yield eng
    loop.run_until_complete(eng.close())


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Any:
    def _run(coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))

    return _run
