"""The inventory file a running lab leaves for the rest of the project (TOML, fixed layout)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

from xencenter_lite.lab.config import LabConfig
from xencenter_lite.lab.tls import tls_uri

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def render_inventory(config: LabConfig, over: str = "unix") -> str:
    """The lab as an inventory: its servers by their sockets ("unix"), or as an admin
    workstation reaches them on their management addresses: "ssh" (qemu+ssh) or "tls"
    (qemu+tls with the lab's client certificate)."""
    uri_of: dict[str, Callable[[str], str]] = {
        "unix": config.uri, "ssh": config.ssh_uri, "tls": partial(tls_uri, config)}
    lines = [f"management_network = {toml_string(config.management_network)}", ""]
    for net in config.networks:
        lines += [f"[networks.{toml_key(net.name)}]", f"rate_mib_s = {net.rate_mib_s}", ""]
    for server in config.servers:
        uri = uri_of[over](server.name)
        lines += [
            "[[servers]]",
            f"name = {toml_string(server.name)}",
            f"uri = {toml_string(uri)}",
        ]
        if server.vm_memory_limit_mib is not None:
            lines.append(f"vm_memory_limit_mib = {server.vm_memory_limit_mib}")
        if server.default_sr is not None:
            lines.append(f"default_sr = {toml_string(server.default_sr)}")
        lines.append("[servers.networks]")
        for net in config.networks:
            address = config.address(server.name, net.name)
            lines.append(f"{toml_key(net.name)} = {toml_string(address)}")
        lines.append("")
    for pool in config.pools:
        lines += [
            "[[pools]]",
            f"name = {toml_string(pool.name)}",
            "members = [" + ", ".join(toml_string(m) for m in pool.members) + "]",
        ]
        if pool.default_sr is not None:
            lines.append(f"default_sr = {toml_string(pool.default_sr)}")
        lines += [f"ha_enabled = {'true' if pool.ha_enabled else 'false'}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_inventory(config: LabConfig) -> Path:
    """inventory.toml (and with `ssh = true` inventory-ssh.toml, with `tls = true`
    inventory-tls.toml); returns the first."""
    files = [(config.inventory_path, "unix")]
    if config.ssh:
        files.append((config.ssh_inventory_path, "ssh"))
    if config.tls:
        files.append((config.tls_inventory_path, "tls"))
    for path, over in files:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(render_inventory(config, over), encoding="utf-8")
        os.replace(tmp, path)
    return config.inventory_path
