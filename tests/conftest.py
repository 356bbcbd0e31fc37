"""Session-wide fixtures: one Qt application and one qasync event loop, and the lab.

libvirt's event implementation can be registered once per process, so the engine tests
and the console tests share one loop. The lab (real libvirtd servers in namespaces with
real QEMU guests) is brought up once per session, from its initial state, and only for the
tests that ask for it. XCL_TEST_LAB_SLOT=N (1-9) runs a separate lab under other names and
subnets, so two test runs on one machine don't share servers.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")
# The engines of a test run (and the commands they start) keep their pending clean-ups in
# a state directory of the run's own, never in the user's.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="xcl-test-state-")

import pytest

T = TypeVar("T")

LAB_FIXTURES = {"lab_inventory"}  # (the engine fixture needs it: its tests count)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that brings up the lab is marked `lab`, whether or not it says so, so
    `-m "not lab"` never starts (or takes down) a lab beside another run."""
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


def _keep_current(loop: asyncio.AbstractEventLoop) -> None:
    """Leave `loop` marked as the running loop between `run` calls.

    In the console the qasync loop runs all the time. Tests run it in bursts, and pytest-qt
    (and qtbot's waits) process Qt events in between: the loop's timers fire then too, and
    the background tasks they resume (the engine's polling, libvirt's keepalive timers) must
    find their loop, or they die and the engine stops noticing lost servers."""
    asyncio.events._set_running_loop(loop)


def _complete(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    try:
        return loop.run_until_complete(coro)
    finally:
        _keep_current(loop)


@pytest.fixture(scope="session")
def loop(qapp: object) -> Iterator[asyncio.AbstractEventLoop]:
    import qasync

    class AlwaysCurrent(qasync.QEventLoop):  # type: ignore[misc]
        """qasync's run_until_complete unmarks the loop, then processes Qt events once
        more: a task resumed in that last pass finds no running loop (asyncio.wait_for
        raises, and the coroutine handed to it is never awaited). Stay marked."""

        def _after_run_forever(self) -> None:
            _keep_current(self)

    loop = AlwaysCurrent(qapp)
    asyncio.set_event_loop(loop)
    _keep_current(loop)
    yield loop
    gc.collect()  # free libvirt connections while their event handles can still be removed
    loop.run_until_complete(asyncio.sleep(0.1))
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Any:
    """Run a coroutine on the session loop (Qt events are processed meanwhile)."""

    def _run(coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return _complete(loop, asyncio.wait_for(coro, timeout))

    return _run


@pytest.fixture(scope="session")
def lab_config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.labtools import lab_config_for_slot

    return lab_config_for_slot(tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="session")
def state_dir(lab_config_path: Path) -> Path:
    from xencenter_lite.lab import load_lab_config

    return load_lab_config(lab_config_path).state_dir


@pytest.fixture(scope="session")
def lab_inventory(lab_config_path: Path) -> Iterator[Path]:
    from xencenter_lite.lab import Lab, load_lab_config

    if os.geteuid() != 0:
        pytest.fail("these tests bring up the lab of real libvirt servers, which needs root")
    lab = Lab(load_lab_config(lab_config_path))
    lab.down()  # start from the lab's initial state, whatever an earlier run left
    path = lab.up()
    try:
        yield path
    finally:
        lab.down()


@pytest.fixture(scope="session")
def engine(lab_inventory: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    from xencenter_lite.core.inventory import load_inventory
    from xencenter_lite.engine import Engine

    eng = Engine(load_inventory(lab_inventory), poll_interval=2.0)
    _complete(loop, eng.start())
    yield eng
    _complete(loop, eng.close())


@pytest.fixture
def restored(engine: Any, run: Any) -> Iterator[None]:
    """For a test that stops a server: afterwards the session's engine is connected again
    to every server at once, not at its next retry (up to 30 s later), so the tests after
    it find the fleet as they expect."""
    yield
    for name, server in engine.snapshot().servers.items():
        if not server.connected:
            run(engine.reconnect(name), 60)
    run(until(lambda: all(s.connected for s in engine.snapshot().servers.values()),
              timeout=60), 70)


async def until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> None:
    """Wait on the running loop until `predicate()` is true (Qt and asyncio keep running)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        await asyncio.sleep(interval)
