"""The lab's networks: network namespaces, one bridge per network, a veth pair per server.

Layout (names derive from the config, see LabConfig):
  namespace "{lab}-sw"        bridges "br-{network}", switch ports "p{N}-{network}"
  namespace "{lab}-{server}"  interface "{network}" with the server's address, and lo
Both ends of every link are shaped with tbf at the network's rate, so each direction of a
server's link has the configured bandwidth; every interface of a network has its MTU.
Everything is created directly inside the lab's namespaces; nothing is created in, or moved
out of, the machine's own namespace.
"""

from __future__ import annotations

import os
from pathlib import Path

from xencenter_lite.lab.config import LabConfig
from xencenter_lite.lab.system import run

NETNS_DIR = Path("/run/netns")


def tbf_args(rate_bytes_s: int) -> list[str]:
    """tbf arguments for `rate_bytes_s`; the bucket holds ~20 ms of traffic (at least 256 KiB)
    so the kernel's timer granularity does not cap high rates."""
    burst = max(256 * 1024, rate_bytes_s // 50)
    return ["tbf", "rate", f"{rate_bytes_s * 8}bit", "burst", str(burst), "latency", "50ms"]


def namespace_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def existing_namespaces() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except OSError:
        return []


def build(config: LabConfig) -> None:
    sw = config.switch_namespace
    run(["ip", "netns", "add", sw])
    _ip(sw, "link", "set", "dev", "lo", "up")
    for net in config.networks:
        bridge = config.bridge(net.name)
        _ip(sw, "link", "add", "name", bridge, "mtu", str(net.mtu), "type", "bridge",
            "stp_state", "0")
        _ip(sw, "link", "set", "dev", bridge, "alias", f"{config.name} {net.name} ({net.subnet})")
        _ip(sw, "link", "set", "dev", bridge, "up")
    for server in config.servers:
        ns = config.namespace(server.name)
        run(["ip", "netns", "add", ns])
        _ip(ns, "link", "set", "dev", "lo", "up")
        for net in config.networks:
            port = config.switch_port(server.name, net.name)
            dev = config.server_interface(net.name)
            # Create the pair inside the switch namespace, its peer straight into the server's.
            _ip(sw, "link", "add", "name", port, "mtu", str(net.mtu), "type", "veth", "peer",
                "name", dev, "netns", ns, "mtu", str(net.mtu))
            _ip(sw, "link", "set", "dev", port, "alias", f"{server.name} {net.name}")
            _ip(sw, "link", "set", "dev", port, "master", config.bridge(net.name), "up")
            address = f"{config.address(server.name, net.name)}/{net.subnet.prefixlen}"
            _ip(ns, "address", "add", address, "dev", dev)
            _ip(ns, "link", "set", "dev", dev, "up")
            shaping = tbf_args(net.rate_bytes_s)
            run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", *shaping])
            run(["tc", "-n", sw, "qdisc", "replace", "dev", port, "root", *shaping])


def delete_namespace(name: str) -> None:
    run(["ip", "netns", "delete", name], what=f"deleting the network namespace {name}")


def _ip(ns: str, *args: str) -> None:
    run(["ip", "-n", ns, *args])


def add_console(config: LabConfig) -> None:
    """This machine on the management network, at config.console_address (the pair's other
    end is a port of the management bridge; it goes with the switch namespace)."""
    sw, net = config.switch_namespace, config.network(config.management_network)
    dev, port = config.console_interface, f"pc-{net.name}"
    run(["ip", "link", "add", "name", dev, "type", "veth", "peer", "name", port, "netns", sw])
    _ip(sw, "link", "set", "dev", port, "master", config.bridge(net.name), "up")
    run(["ip", "address", "add", f"{config.console_address}/{net.subnet.prefixlen}", "dev",
         dev])
    run(["ip", "link", "set", "dev", dev, "up"])
