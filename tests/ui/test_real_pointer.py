"""A real drag with a real pointer: the console on an X display of its own (Xvfb), a VM's
row dragged with xdotool (button down, moves, button up) onto a pool's row, and the Migrate
VM wizard opening for that VM with the pool as its destination, as XenCenter does.

The servers are libvirt's test driver (the pool's two on `test:///default`, which says it
has memory free; the standalone one a node file with the VM), so nothing here needs the
lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _node(folder: Path, name: str, vm: str) -> Path:
    domain = (f"<domain type='test'><name>{vm}</name><memory>1024</memory><vcpu>1</vcpu>"
              "<os><type>hvm</type></os></domain>")
    path = folder / f"{name}.xml"
    path.write_text("<node><cpu><mhz>2600</mhz><model>x86_64</model><active>4</active>"
                    "<nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads>"
                    f"</cpu><memory>16777216</memory>{domain}</node>\n")
    return path


@pytest.fixture
def display(tmp_path: Path) -> Iterator[str]:
    for number in range(140, 200):
        if not Path(f"/tmp/.X11-unix/X{number}").exists():
            break
    name = f":{number}"
    xvfb = subprocess.Popen(["Xvfb", name, "-screen", "0", "1280x1024x24", "-nolisten", "tcp",
                             "-noreset"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            assert xvfb.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.05)
        yield name
    finally:
        xvfb.terminate()
        xvfb.wait(10)


def test_a_real_drag_of_a_vm_onto_a_pool_opens_the_wizard_for_that_pool(
        tmp_path: Path, display: str) -> None:
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(
        '[[servers]]\nname = "td-a1"\nuri = "test:///default?server=a1"\n\n'
        '[[servers]]\nname = "td-a2"\nuri = "test:///default?server=a2"\n\n'
        f'[[servers]]\nname = "td-b"\nuri = "test://{_node(tmp_path, "b", "vm-b")}"\n\n'
        '[[pools]]\nname = "Pool A"\nmembers = ["td-a1", "td-a2"]\n')
    env = dict(os.environ, DISPLAY=display, XDG_STATE_HOME=str(tmp_path / "state"))
    env.pop("QT_QPA_PLATFORM", None)  # the real display, not offscreen
    console = subprocess.Popen(
        [sys.executable, "-m", "tests.ui.xvfb_console", str(inventory), "vm-b", "Pool A"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert console.stdout is not None
        rows = json.loads(console.stdout.readline() or '{"error": "no output"}')
        assert "error" not in rows, (rows, console.stderr.read() if console.poll() else "")
        (vx, vy), (px, py) = rows["vm"], rows["pool"]

        def xdo(*args: object) -> None:
            subprocess.run(["xdotool", *map(str, args)], env=env, check=True)

        xdo("mousemove", vx, vy)
        time.sleep(0.3)
        xdo("mousedown", 1)
        for i in range(1, 21):  # past the drag distance, then over to the pool, as a hand
            xdo("mousemove", vx + (px - vx) * i // 20 + 3, vy + (py - vy) * i // 20)
            time.sleep(0.05)
        xdo("mousemove", px, py)
        time.sleep(0.3)
        xdo("mouseup", 1)
        seen = json.loads(console.stdout.readline() or '{"error": "no output"}')
        assert seen == {"wizard": "Migrate VM", "destination": "Pool A", "vms": ["vm-b"]}, seen
    finally:
        console.kill()
        console.communicate(timeout=10)  # (and its pipes closed)
