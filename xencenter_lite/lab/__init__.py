"""The built-in lab: several real libvirt "servers" on one machine, for demos and tests.

Each server is a libvirtd in its own network, mount and UTS namespace; the servers are wired
together by bridges in a "switch" namespace. Nothing here imports libvirt: the lab drives
libvirtd with `virsh`, like an administrator would.
"""

from xencenter_lite.core.inventory import PoolConfig
from xencenter_lite.lab.cli import run_lab_command
from xencenter_lite.lab.config import (
    DEFAULT_CONFIG_PATH,
    DiskConfig,
    GuestConfig,
    LabConfig,
    NetworkConfig,
    ServerConfig,
    SrConfig,
    load_lab_config,
)
from xencenter_lite.lab.errors import LabConfigError, LabError
from xencenter_lite.lab.lab import Lab

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DiskConfig",
    "GuestConfig",
    "Lab",
    "LabConfig",
    "LabConfigError",
    "LabError",
    "NetworkConfig",
    "PoolConfig",
    "ServerConfig",
    "SrConfig",
    "load_lab_config",
    "run_lab_command",
]
