"""The console's tests drive it with FakeEngine: each of its public methods must be the
real engine's, with the same parameters and the same kind (coroutine or not), so the fake
cannot drift from what the console gets in the product."""

from __future__ import annotations

import inspect

from tests.ui.fakes import FakeEngine, lab_fleet
from xencenter_lite.engine import Engine

# Test hooks of the fake's own: how a test changes the fleet, not what the console calls.
FAKE_ONLY = {"push", "push_job", "server_event"}


def _public_methods(cls: type) -> dict[str, object]:
    return {name: member for name, member in vars(cls).items()
            if not name.startswith("_") and callable(member)}


def test_the_fake_engines_methods_are_the_engines() -> None:
    fake = _public_methods(FakeEngine)
    assert set(fake) >= FAKE_ONLY
    for name, method in sorted(fake.items()):
        if name in FAKE_ONLY:
            continue
        real = getattr(Engine, name, None)
        assert real is not None, f"FakeEngine.{name} is not an Engine method"
        assert callable(real), name
        assert inspect.iscoroutinefunction(method) == inspect.iscoroutinefunction(real), \
            f"{name}: one is a coroutine and the other is not"
        fake_params = list(inspect.signature(method).parameters)
        real_params = list(inspect.signature(real).parameters)
        assert fake_params == real_params[:len(fake_params)], \
            f"{name}{inspect.signature(method)} against Engine.{name}{inspect.signature(real)}"
        missing = [p for p in real_params[len(fake_params):]
                   if inspect.signature(real).parameters[p].default is inspect.Parameter.empty]
        assert not missing, f"{name}: the fake lacks required parameters {missing}"


def test_the_fake_engines_attributes_are_the_engines() -> None:
    fake = FakeEngine(lab_fleet())
    for name in ("busy", "jobs", "inventory"):
        assert hasattr(fake, name) and hasattr(Engine, name), name
