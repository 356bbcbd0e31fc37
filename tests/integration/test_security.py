"""Secrets stay secret: a password in a libvirt URI never reaches logs, messages or output."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.labtools import cli
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.engine import Engine

SECRET = "s3cret-Pa55"
INVENTORY = f"""
[[servers]]
name = "remote-1"
uri = "qemu+tcp://admin:{SECRET}@127.0.0.1:1/system"
[servers.networks]
storage = "127.0.0.1"
"""


def test_a_password_in_a_uri_is_never_shown(tmp_path: Path, run: Any,
                                            caplog: pytest.LogCaptureFixture) -> None:
    inv = tmp_path / "inventory.toml"
    inv.write_text(INVENTORY)
    caplog.set_level(logging.DEBUG)
    engine = Engine(load_inventory(inv))
    run(engine.start(watch=False))
    try:
        server = engine.snapshot().servers["remote-1"]
        assert not server.connected and server.error
        assert SECRET not in server.error
    finally:
        run(engine.close())
    assert "remote-1" in caplog.text  # the failure was logged…
    assert SECRET not in caplog.text  # …without the password
    for args in (["list"], ["list", "--json"], ["precheck", "x", "--to", "remote-1"]):
        result = cli(*args, inventory=inv)
        assert SECRET not in result.stdout + result.stderr, args
