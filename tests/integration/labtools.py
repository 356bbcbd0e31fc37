"""Helpers for tests that look at the lab from outside, as an operator would."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from xencenter_lite.core.model import VM
from xencenter_lite.engine import Engine

HERE = Path(__file__).parent
LAB_CONFIG = HERE / "lab-test.toml"
LAB_NAME = tomllib.loads(LAB_CONFIG.read_text())["name"]


def vm_named(engine: Engine, name: str) -> VM:
    found = engine.snapshot().vms_named(name)
    assert len(found) == 1, f"expected one VM named {name}, found {found}"
    return found[0]


def netns(server: str) -> str:
    return f"{LAB_NAME}-{server}"


def iface_bytes(server: str, iface: str, direction: str = "tx") -> int:
    out = subprocess.run(
        ["ip", "netns", "exec", netns(server), "cat",
         f"/sys/class/net/{iface}/statistics/{direction}_bytes"],
        check=True, capture_output=True, text=True)
    return int(out.stdout)


def pattern_intact(path: str, fmt: str, pattern: int = 0x5A, length: str = "4M") -> bool:
    """The lab wrote `pattern` over the first 4 MiB of every disk; is it still there?"""
    out = subprocess.run(
        ["qemu-io", "-U", "-r", "-f", fmt, "-c", f"read -P 0x{pattern:x} 0 {length}", path],
        capture_output=True, text=True)
    return out.returncode == 0 and "Pattern verification failed" not in out.stdout + out.stderr \
        and bool(re.search(r"read \d+/\d+ bytes", out.stdout))


def cli(*args: str, inventory: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("xencenter-lite", path=str(Path(sys.executable).parent)) or "xencenter-lite"
    return subprocess.run([exe, "--inventory", str(inventory), *args], capture_output=True,
                          text=True, timeout=timeout)


def virsh(uri: str, *args: str) -> str:
    return subprocess.run(["virsh", "-c", uri, *args], check=True, capture_output=True,
                          text=True).stdout
