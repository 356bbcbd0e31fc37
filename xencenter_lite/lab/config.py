"""The lab's configuration: a TOML file, read with tomllib and checked key by key.

Every name the lab creates on the machine (namespaces, bridges, directories, sockets) derives
from this configuration, so a second lab with another `name`, `state_dir` and subnets runs
side by side with the demo lab without touching it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

from xencenter_lite.core.inventory import (  # a lab pool is an inventory pool
    PoolConfig,
    describe_value,
)
from xencenter_lite.lab.errors import LabConfigError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "resources" / "lab.toml"

# All deterministic UUIDs of the lab (hosts, guests, SRs) derive from this namespace.
LAB_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:xencenter-lite:lab")

ACCEL_CHOICES = ("auto", "kvm", "tcg")
GUEST_STATES = ("running", "halted")
GUEST_OSES = ("linux", "none")  # linux: the workload guest (guestimage.py); none: SeaBIOS only
DISK_FORMATS = ("qcow2", "raw")
MAX_SERVERS = 99  # switch-side port names are "p{N}-{network}", at most 15 characters
MAX_UNIX_SOCKET_PATH = 107
PATTERN_SIZE_MIB = 4  # the first 4 MiB of every guest disk hold the test pattern
LINUX_MIN_DISK_MIB = 9  # a linux guest's records start 8 MiB into its last disk
LINUX_MIN_MEMORY_MIB = 96

_LAB_NAME = re.compile(r"[a-z][a-z0-9]{0,7}")
_NETWORK_NAME = re.compile(r"[a-z][a-z0-9-]{0,9}")
SERVER_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_GUEST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_DISK_DEV = re.compile(r"vd[a-z]")
_INDEX = re.compile(r"\[\d+\]")
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._+/-]+")
# Paths the lab bind-mounts over inside each server: a state_dir there would be hidden.
_SHADOWED_DIRS = tuple(
    PurePosixPath(f"{base}/libvirt")
    for base in ("/etc", "/var/lib", "/run", "/var/log", "/var/cache")
)
# Shared system directories (two levels deep) that can never be a lab's own state_dir.
_SYSTEM_DIRS = frozenset(
    PurePosixPath(f"/{top}/{sub}")
    for top in ("usr", "var")
    for sub in ("lib", "local", "tmp", "log", "cache", "run", "share", "bin", "sbin", "spool")
)


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    subnet: ipaddress.IPv4Network
    rate_mib_s: int
    management: bool = False
    mtu: int = 1500  # 9000: jumbo frames, as storage networks often have

    @property
    def rate_bytes_s(self) -> int:
        return self.rate_mib_s * 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    name: str
    host_number: int
    vm_memory_limit_mib: int | None = None
    default_sr: str | None = None


@dataclass(frozen=True)
class SrConfig:
    name: str
    servers: tuple[str, ...]
    shared: bool = False
    size_mib: int | None = None  # a tmpfs of this size is mounted on the directory


@dataclass(frozen=True)
class DiskConfig:
    dev: str
    sr: str
    size_mib: int
    format: str = "qcow2"
    data_mib: int = PATTERN_SIZE_MIB  # written with the test pattern from the start


@dataclass(frozen=True)
class GuestConfig:
    name: str
    server: str
    state: str = "running"
    memory_mib: int = 128
    vcpus: int = 1
    folder: str = ""
    disks: tuple[DiskConfig, ...] = ()
    os: str = "none"
    dirty_mib: int = 8  # linux: MiB of guest memory rewritten every second

    @property
    def linux(self) -> bool:
        return self.os == "linux"

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class LabConfig:
    """A validated lab configuration plus the names and paths derived from it."""

    name: str
    state_dir: Path
    accel: str
    networks: tuple[NetworkConfig, ...]
    servers: tuple[ServerConfig, ...]
    pools: tuple[PoolConfig, ...] = ()
    srs: tuple[SrConfig, ...] = ()
    guests: tuple[GuestConfig, ...] = ()
    # Servers also reachable over ssh (an sshd in each, a key of the lab's, this machine on
    # the management network): `lab up` then writes inventory-ssh.toml beside inventory.toml.
    ssh: bool = False
    # Servers also reachable over TLS (libvirtd listening with certificates of the lab's CA;
    # QEMU's migration TLS set up too): `lab up` then writes inventory-tls.toml as well.
    tls: bool = False
    path: Path | None = field(default=None, compare=False)

    # ---- lookups ---------------------------------------------------------------------------
    def server(self, name: str) -> ServerConfig:
        return next(s for s in self.servers if s.name == name)

    def network(self, name: str) -> NetworkConfig:
        return next(n for n in self.networks if n.name == name)

    @property
    def management_network(self) -> str:
        return next(n.name for n in self.networks if n.management)

    def pool_of(self, server: str) -> PoolConfig | None:
        return next((p for p in self.pools if server in p.members), None)

    def srs_on(self, server: str) -> list[SrConfig]:
        return [sr for sr in self.srs if server in sr.servers]

    def guests_on(self, server: str) -> list[GuestConfig]:
        return [g for g in self.guests if g.server == server]

    # ---- names on the machine --------------------------------------------------------------
    @property
    def switch_namespace(self) -> str:
        return f"{self.name}-sw"

    def namespace(self, server: str) -> str:
        return f"{self.name}-{server}"

    @property
    def namespaces(self) -> list[str]:
        return [self.switch_namespace] + [self.namespace(s.name) for s in self.servers]

    @staticmethod
    def bridge(network: str) -> str:
        """The bridge of `network`, inside the switch namespace."""
        return f"br-{network}"

    @staticmethod
    def server_interface(network: str) -> str:
        """The server's interface on `network`, inside the server's namespace."""
        return network

    def switch_port(self, server: str, network: str) -> str:
        """The switch end of the server's veth pair on `network`, in the switch namespace."""
        index = next(i for i, s in enumerate(self.servers, 1) if s.name == server)
        return f"p{index}-{network}"

    def address(self, server: str, network: str) -> str:
        net = self.network(network)
        return str(net.subnet.network_address + self.server(server).host_number)

    # ---- paths -----------------------------------------------------------------------------
    def host_dir(self, server: str) -> Path:
        return self.state_dir / "hosts" / server

    def socket_path(self, server: str) -> Path:
        return self.host_dir(server) / "run" / "libvirt-sock"

    def uri(self, server: str) -> str:
        return f"qemu+unix:///system?socket={self.socket_path(server)}"

    def ssh_uri(self, server: str) -> str:
        """The server as an admin workstation reaches it: over ssh, on its management
        address (the key and host keys come from the lab's ssh client configuration)."""
        return f"qemu+ssh://root@{self.address(server, self.management_network)}/system"

    @property
    def console_address(self) -> str:
        """This machine's address on the management network (the last host of its subnet),
        as an admin workstation has one."""
        net = self.network(self.management_network)
        return str(net.subnet.broadcast_address - 1)

    @property
    def console_interface(self) -> str:
        return f"{self.name}-con"

    @property
    def ssh_dir(self) -> Path:
        """The lab's client key, authorized_keys and known_hosts."""
        return self.state_dir / "ssh"

    @property
    def ssh_client_config(self) -> Path:
        """The client configuration that makes ssh to the lab's servers use the lab's key
        and known_hosts (never the user's)."""
        return Path("/etc/ssh/ssh_config.d") / f"xencenter-lite-{self.name}.conf"

    def sr_path(self, sr: SrConfig, server: str) -> Path:
        if sr.shared:
            return self.state_dir / "sr" / sr.name
        return self.host_dir(server) / "sr" / sr.name

    def sr_paths(self) -> list[tuple[SrConfig, str, Path]]:
        """Every (SR, server, directory); a shared SR appears once per server, same path."""
        return [(sr, server, self.sr_path(sr, server)) for sr in self.srs for server in sr.servers]

    def tmpfs_dirs(self) -> list[tuple[Path, int]]:
        """Directories that get a size-limited tmpfs, with the size in MiB (each once)."""
        seen: dict[Path, int] = {}
        for sr, _server, path in self.sr_paths():
            if sr.size_mib is not None:
                seen.setdefault(path, sr.size_mib)
        return list(seen.items())

    @property
    def inventory_path(self) -> Path:
        return self.state_dir / "inventory.toml"

    @property
    def ssh_inventory_path(self) -> Path:
        return self.state_dir / "inventory-ssh.toml"

    @property
    def tls_inventory_path(self) -> Path:
        return self.state_dir / "inventory-tls.toml"

    # ---- deterministic identities ----------------------------------------------------------
    def host_uuid(self, server: str) -> str:
        return str(uuid.uuid5(LAB_UUID_NAMESPACE, f"{self.name}/host/{server}"))

    def guest_uuid(self, guest: str) -> str:
        return str(uuid.uuid5(LAB_UUID_NAMESPACE, f"{self.name}/guest/{guest}"))

    def sr_uuid(self, sr: SrConfig, server: str) -> str:
        """A shared SR has one UUID on every server; a local one differs per server."""
        key = f"{self.name}/sr/{sr.name}" if sr.shared else f"{self.name}/sr/{server}/{sr.name}"
        return str(uuid.uuid5(LAB_UUID_NAMESPACE, key))


# ---- loading -----------------------------------------------------------------------------


def load_lab_config(path: Path | None = None) -> LabConfig:
    """Read and check the lab's TOML file (None: the default resources/lab.toml)."""
    path = DEFAULT_CONFIG_PATH if path is None else Path(path)
    file = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabConfigError(
            file, "", f"file not found ({path}); pass the path of an existing lab file."
        ) from None
    except OSError as exc:
        raise LabConfigError(file, "", f"cannot read {path}: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise LabConfigError(file, "", "not UTF-8 text; save the file as UTF-8.") from None
    except tomllib.TOMLDecodeError as exc:
        raise LabConfigError(file, "", f"not valid TOML: {exc}; fix the syntax there.") from None
    config = _Parser(file).parse(data)
    return dataclasses.replace(config, path=path)


_MISSING: Any = object()


def _join(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "(none)"


class _Parser:
    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, message: str) -> NoReturn:
        raise LabConfigError(self.file, key, message)

    # ---- typed access ----------------------------------------------------------------------
    def check_keys(self, where: str, table: dict[str, Any], allowed: Sequence[str]) -> None:
        for key in table:
            if key not in allowed:
                self.fail(
                    _key(where, key),
                    f"unknown key; remove it or use one of: {', '.join(allowed)}.",
                )

    def value(
        self,
        table: dict[str, Any],
        where: str,
        key: str,
        check: Callable[[object], bool],
        expected: str,
        example: str,
        default: Any = _MISSING,
    ) -> Any:
        full = _key(where, key)
        if key not in table:
            if default is _MISSING:
                self.fail(full, f"missing; add it, e.g. {key} = {example}.")
            return default
        value = table[key]
        if not check(value):
            self.fail(
                full,
                f"expected {expected}, got {describe_value(value)}; write e.g. {key} = {example}.",
            )
        return value

    def string(self, table: dict[str, Any], where: str, key: str, example: str, **kw: Any) -> Any:
        return self.value(table, where, key, _is_str, "a string", example, **kw)

    def integer(
        self,
        table: dict[str, Any],
        where: str,
        key: str,
        example: str,
        low: int,
        high: int,
        **kw: Any,
    ) -> Any:
        value = self.value(table, where, key, _is_int, "an integer", example, **kw)
        if value is not None and not low <= value <= high:
            self.fail(_key(where, key), f"{value} is out of range; use {low} to {high}.")
        return value

    def boolean(self, table: dict[str, Any], where: str, key: str, **kw: Any) -> Any:
        return self.value(table, where, key, _is_bool, "true or false", "true", **kw)

    def strings(self, table: dict[str, Any], where: str, key: str, example: str, **kw: Any) -> Any:
        return self.value(table, where, key, _is_str_list, "an array of strings", example, **kw)

    def tables(self, table: dict[str, Any], where: str, key: str, example: str, **kw: Any) -> Any:
        if key in table and not _is_table_list(table[key]):
            header = _INDEX.sub("", f"{where}.{key}") if where else key
            self.fail(
                _key(where, key),
                f"expected an array of tables, got {describe_value(table[key])}; write one "
                f"[[{header}]] table per item, or {key} = {example}.",
            )
        return self.value(table, where, key, _is_table_list, "an array of tables", example, **kw)

    # ---- the file --------------------------------------------------------------------------
    def parse(self, data: dict[str, Any]) -> LabConfig:
        self.check_keys(
            "",
            data,
            ("name", "state_dir", "accel", "ssh", "tls", "networks", "servers", "pools",
             "srs", "guests"),
        )
        name = self.string(data, "", "name", '"xcl"')
        if not _LAB_NAME.fullmatch(name):
            self.fail(
                "name",
                f"{name!r} cannot prefix the lab's namespace names; use 1-8 lowercase letters "
                'or digits starting with a letter, e.g. name = "xcl".',
            )
        state_dir = self.state_dir(
            self.string(data, "", "state_dir", '"/var/lib/xencenter-lite/lab"')
        )
        accel = self.string(data, "", "accel", '"auto"', default="auto")
        if accel not in ACCEL_CHOICES:
            self.fail("accel", f"{accel!r} is not known; use one of: {', '.join(ACCEL_CHOICES)}.")
        ssh = self.boolean(data, "", "ssh", default=False)
        tls = self.boolean(data, "", "tls", default=False)
        networks = self.networks(data)
        servers = self.servers(data, networks)
        srs = self.srs(data, servers)
        pools = self.pools(data, servers, srs)
        self.check_default_srs(servers, pools, srs)
        guests = self.guests(data, servers, srs)
        config = LabConfig(
            name=name,
            state_dir=state_dir,
            accel=accel,
            networks=networks,
            servers=servers,
            pools=pools,
            srs=srs,
            guests=guests,
            ssh=ssh,
            tls=tls,
        )
        if ssh:
            taken = next((s for s in servers if config.address(s.name, config.management_network)
                          == config.console_address), None)
            if taken is not None:
                self.fail(
                    "ssh",
                    f"this machine takes {config.console_address} (the last address of the "
                    f"management network) to reach the servers over ssh, but it is the "
                    f"address of {taken.name!r}; give that server another host_number.",
                )
        for server in servers:
            sock = str(config.socket_path(server.name))
            if len(sock) > MAX_UNIX_SOCKET_PATH:
                self.fail(
                    "state_dir",
                    f"the socket path {sock} is longer than {MAX_UNIX_SOCKET_PATH} characters "
                    "(the limit of a unix socket); choose a shorter state_dir.",
                )
        return config

    def state_dir(self, raw: str) -> Path:
        path = PurePosixPath(raw)
        if not _SAFE_PATH.fullmatch(raw) or ".." in path.parts or raw != str(path):
            self.fail(
                "state_dir",
                f"{raw!r} is not usable; give a normalised absolute path made of letters, "
                'digits and . _ + - / only, e.g. state_dir = "/var/lib/xencenter-lite/lab".',
            )
        if path in _SYSTEM_DIRS or len(path.parts) < 3:
            self.fail(
                "state_dir",
                f"{raw} is a system directory and `lab down` deletes the state_dir; "
                'use a directory of its own, e.g. "/var/lib/xencenter-lite/lab".',
            )
        for shadowed in _SHADOWED_DIRS:
            if path == shadowed or shadowed in path.parents or path in shadowed.parents:
                self.fail(
                    "state_dir",
                    f"{raw} overlaps {shadowed}, which the lab mounts over inside every server; "
                    'use another directory, e.g. "/var/lib/xencenter-lite/lab".',
                )
        return Path(raw)

    def networks(self, data: dict[str, Any]) -> tuple[NetworkConfig, ...]:
        raw = data.get("networks")
        if raw is None:
            self.fail("networks", "missing; add a [networks.NAME] table for each network.")
        if not isinstance(raw, dict):
            self.fail(
                "networks",
                f"expected tables like [networks.management], got {describe_value(raw)}; "
                "write each network as a [networks.NAME] table with subnet and rate_mib_s.",
            )
        if not raw:
            self.fail("networks", "no networks; add at least [networks.management].")
        result: list[NetworkConfig] = []
        for name, table in raw.items():
            where = _key("networks", name)
            if not _NETWORK_NAME.fullmatch(name) or name == "lo":
                self.fail(
                    where,
                    f"network name {name!r} cannot name an interface; use 1-10 lowercase "
                    "letters, digits or dashes starting with a letter (e.g. storage).",
                )
            if not isinstance(table, dict):
                self.fail(where, f"expected a table, got {describe_value(table)}; write [{where}].")
            self.check_keys(where, table, ("subnet", "rate_mib_s", "management", "mtu"))
            subnet = self.subnet(where, self.string(table, where, "subnet", '"10.240.1.0/24"'))
            rate = self.integer(table, where, "rate_mib_s", "200", 1, 100_000)
            management = self.boolean(table, where, "management", default=False)
            mtu = self.integer(table, where, "mtu", "9000", 576, 9000, default=1500)
            for other in result:
                if subnet.overlaps(other.subnet):
                    self.fail(
                        _key(where, "subnet"),
                        f"{subnet} overlaps networks.{other.name}.subnet ({other.subnet}); "
                        "give each network its own subnet.",
                    )
            result.append(NetworkConfig(name, subnet, rate, management, mtu))
        managers = [n.name for n in result if n.management]
        if not managers:
            self.fail(
                "networks",
                "no network has management = true; mark exactly one network as the "
                "management network.",
            )
        if len(managers) > 1:
            self.fail(
                _key(_key("networks", managers[1]), "management"),
                f"networks {managers[0]!r} and {managers[1]!r} both say management = true; "
                "mark exactly one network as the management network.",
            )
        return tuple(result)

    def subnet(self, where: str, raw: str) -> ipaddress.IPv4Network:
        key = _key(where, "subnet")
        try:
            subnet = ipaddress.IPv4Network(raw, strict=False)
        except ValueError:
            self.fail(key, f'{raw!r} is not an IPv4 subnet; write it like "10.240.2.0/24".')
        if "/" not in raw:
            self.fail(key, f'{raw!r} has no prefix length; write it like "{raw}/24".')
        if str(subnet) != raw:
            self.fail(key, f'{raw!r} has host bits set; did you mean "{subnet}"?')
        if subnet.prefixlen > 29:
            self.fail(key, f"{raw} is too small for a lab; use a /24 (or at least a /29).")
        return subnet

    def servers(
        self, data: dict[str, Any], networks: tuple[NetworkConfig, ...]
    ) -> tuple[ServerConfig, ...]:
        raw = self.tables(data, "", "servers", '[{ name = "lab-a1", host_number = 11 }]')
        if not raw:
            self.fail("servers", "no servers; add at least one [[servers]] table.")
        if len(raw) > MAX_SERVERS:
            self.fail("servers", f"{len(raw)} servers; the lab supports at most {MAX_SERVERS}.")
        max_host = min(n.subnet.num_addresses for n in networks) - 2
        result: list[ServerConfig] = []
        for i, table in enumerate(raw):
            where = f"servers[{i}]"
            self.check_keys(
                where, table, ("name", "host_number", "vm_memory_limit_mib", "default_sr")
            )
            name = self.string(table, where, "name", '"lab-a1"')
            if not SERVER_NAME.fullmatch(name) or name == "sw":
                self.fail(
                    _key(where, "name"),
                    f"server name {name!r} is not usable; use up to 32 lowercase letters, digits "
                    "or inner dashes (not 'sw', which names the lab's switch), e.g. lab-a1.",
                )
            if any(s.name == name for s in result):
                self.fail(
                    _key(where, "name"),
                    f"duplicate server name {name!r}; give each server its own name.",
                )
            host = self.integer(table, where, "host_number", "11", 1, max_host)
            clash = next((s for s in result if s.host_number == host), None)
            if clash is not None:
                self.fail(
                    _key(where, "host_number"),
                    f"{host} is already the host number of {clash.name!r}; give each server "
                    "its own host number.",
                )
            limit = self.integer(
                table, where, "vm_memory_limit_mib", "2048", 1, 1 << 30, default=None
            )
            default_sr = self.string(table, where, "default_sr", '"Local storage"', default=None)
            result.append(ServerConfig(name, host, limit, default_sr))
        return tuple(result)

    def server_ref(self, key: str, name: str, servers: Sequence[ServerConfig]) -> None:
        if not any(s.name == name for s in servers):
            self.fail(
                key,
                f"no server named {name!r}; the servers are {_join([s.name for s in servers])}.",
            )

    def srs(self, data: dict[str, Any], servers: tuple[ServerConfig, ...]) -> tuple[SrConfig, ...]:
        raw = self.tables(
            data, "", "srs", '[{ name = "Local storage", servers = ["lab-a1"] }]', default=[]
        )
        result: list[SrConfig] = []
        for i, table in enumerate(raw):
            where = f"srs[{i}]"
            self.check_keys(where, table, ("name", "servers", "shared", "size_mib"))
            name = self.string(table, where, "name", '"Local storage"')
            if (
                not name
                or name != name.strip()
                or name in (".", "..")
                or len(name) > 64
                or any(ch == "/" or not ch.isprintable() for ch in name)
            ):
                self.fail(
                    _key(where, "name"),
                    f"SR name {name!r} cannot name a directory; use up to 64 printable "
                    "characters without '/' or leading/trailing spaces.",
                )
            if any(s.name == name for s in result):
                self.fail(
                    _key(where, "name"),
                    f"duplicate SR name {name!r}; define each SR once and list all its servers "
                    "in its `servers` key.",
                )
            members = self.strings(table, where, "servers", '["lab-a1"]')
            if not members:
                self.fail(_key(where, "servers"), "empty; list the servers that have this SR.")
            for j, member in enumerate(members):
                self.server_ref(f"{where}.servers[{j}]", member, servers)
                if member in members[:j]:
                    self.fail(f"{where}.servers[{j}]", f"{member!r} is listed twice; list it once.")
            shared = self.boolean(table, where, "shared", default=False)
            size = self.integer(table, where, "size_mib", "64", 1, 1 << 20, default=None)
            result.append(SrConfig(name, tuple(members), shared, size))
        return tuple(result)

    def sr_ref(
        self, key: str, name: str, server: str, srs: Sequence[SrConfig], what: str = ""
    ) -> None:
        if not any(sr.name == name and server in sr.servers for sr in srs):
            on_server = [sr.name for sr in srs if server in sr.servers]
            self.fail(
                key,
                f"no SR named {name!r} on {server}{what}; the SRs on {server} are "
                f"{_join(on_server)} (add {server} to the SR's `servers` or pick one of those).",
            )

    def pools(
        self,
        data: dict[str, Any],
        servers: tuple[ServerConfig, ...],
        srs: tuple[SrConfig, ...],
    ) -> tuple[PoolConfig, ...]:
        raw = self.tables(
            data, "", "pools", '[{ name = "Production", members = ["lab-a1"] }]', default=[]
        )
        result: list[PoolConfig] = []
        for i, table in enumerate(raw):
            where = f"pools[{i}]"
            self.check_keys(where, table, ("name", "members", "default_sr", "ha_enabled"))
            name = self.string(table, where, "name", '"Production"')
            if not name.strip() or not name.isprintable():
                self.fail(_key(where, "name"), "empty or unprintable; give the pool a name.")
            if any(p.name == name for p in result):
                self.fail(
                    _key(where, "name"),
                    f"duplicate pool name {name!r}; give each pool its own name.",
                )
            members = self.strings(table, where, "members", '["lab-a1", "lab-a2"]')
            if not members:
                self.fail(_key(where, "members"), "empty; list the servers of the pool.")
            for j, member in enumerate(members):
                key = f"{where}.members[{j}]"
                self.server_ref(key, member, servers)
                if member in members[:j]:
                    self.fail(key, f"{member!r} is listed twice; list it once.")
                other = next((p for p in result if member in p.members), None)
                if other is not None:
                    self.fail(
                        key,
                        f"{member!r} is already a member of pool {other.name!r}; a server "
                        "belongs to one pool at most.",
                    )
            default_sr = self.string(table, where, "default_sr", '"Shared storage"', default=None)
            if default_sr is not None:
                for member in members:
                    self.sr_ref(
                        _key(where, "default_sr"), default_sr, member, srs, f" (pool {name})"
                    )
            ha = self.boolean(table, where, "ha_enabled", default=False)
            result.append(PoolConfig(name, tuple(members), default_sr, ha))
        return tuple(result)

    def check_default_srs(
        self,
        servers: tuple[ServerConfig, ...],
        pools: tuple[PoolConfig, ...],
        srs: tuple[SrConfig, ...],
    ) -> None:
        for i, server in enumerate(servers):
            if server.default_sr is None:
                continue
            key = f"servers[{i}].default_sr"
            pool = next((p for p in pools if server.name in p.members), None)
            if pool is not None:
                self.fail(
                    key,
                    f"{server.name} is a member of pool {pool.name!r}, whose default_sr applies; "
                    "remove this key or set the pool's default_sr.",
                )
            self.sr_ref(key, server.default_sr, server.name, srs)

    def guests(
        self,
        data: dict[str, Any],
        servers: tuple[ServerConfig, ...],
        srs: tuple[SrConfig, ...],
    ) -> tuple[GuestConfig, ...]:
        raw = self.tables(data, "", "guests", '[{ name = "web-1", server = "lab-a1" }]', default=[])
        result: list[GuestConfig] = []
        for i, table in enumerate(raw):
            where = f"guests[{i}]"
            self.check_keys(
                where,
                table,
                ("name", "server", "state", "memory_mib", "vcpus", "folder", "disks", "os",
                 "dirty_mib"),
            )
            name = self.string(table, where, "name", '"web-1"')
            if not _GUEST_NAME.fullmatch(name):
                self.fail(
                    _key(where, "name"),
                    f"guest name {name!r} is not usable; use up to 63 letters, digits, dots, "
                    "dashes or underscores, starting with a letter or digit.",
                )
            if any(g.name == name for g in result):
                self.fail(
                    _key(where, "name"),
                    f"duplicate guest name {name!r}; give each guest its own name.",
                )
            server = self.string(table, where, "server", '"lab-a1"')
            self.server_ref(_key(where, "server"), server, servers)
            state = self.string(table, where, "state", '"running"', default="running")
            if state not in GUEST_STATES:
                self.fail(
                    _key(where, "state"),
                    f"{state!r} is not a guest state; use one of: {', '.join(GUEST_STATES)}.",
                )
            memory = self.integer(table, where, "memory_mib", "128", 16, 1 << 20, default=128)
            vcpus = self.integer(table, where, "vcpus", "1", 1, 64, default=1)
            folder = self.string(table, where, "folder", '"/Web"', default="")
            if folder and (not folder.startswith("/") or not folder.isprintable()):
                self.fail(
                    _key(where, "folder"),
                    f"{folder!r} is not a folder path; start it with '/', e.g. \"/Web\".",
                )
            disks = self.disks(where, table, server, srs)
            os_name = self.string(table, where, "os", '"linux"', default="none")
            if os_name not in GUEST_OSES:
                self.fail(
                    _key(where, "os"),
                    f"{os_name!r} is not known; use one of: {', '.join(GUEST_OSES)}.",
                )
            dirty = self.integer(table, where, "dirty_mib", "8", 0, 1 << 20, default=8)
            if os_name == "linux" and dirty > memory // 4:
                # Its tmpfs holds what it rewrites (dirty_mib + 1 MiB); past a quarter of the
                # memory the guest runs short and its dirtier cannot keep the rate.
                self.fail(
                    _key(where, "dirty_mib"),
                    f"a linux guest of {memory} MiB can keep at most {memory // 4} MiB/s of its "
                    f"memory dirty; use 0 to {memory // 4}, or give it more memory_mib.",
                )
            if os_name == "linux" and (not disks or disks[-1].size_mib < LINUX_MIN_DISK_MIB):
                self.fail(
                    _key(where, "disks"),
                    f"a linux guest writes its records from 8 MiB into its last disk; give it a "
                    f"last disk of at least {LINUX_MIN_DISK_MIB} MiB.",
                )
            if os_name == "linux" and disks[-1].data_mib > PATTERN_SIZE_MIB:
                self.fail(
                    _key(where, "disks"),
                    f"a linux guest writes its records from 8 MiB into its last disk, so that "
                    f"disk keeps data_mib = {PATTERN_SIZE_MIB}; put the data on another disk.",
                )
            if os_name == "linux" and memory < LINUX_MIN_MEMORY_MIB:
                self.fail(
                    _key(where, "memory_mib"),
                    f"{memory} MiB is too little for a linux guest; give it at least "
                    f"{LINUX_MIN_MEMORY_MIB}.",
                )
            result.append(GuestConfig(name, server, state, memory, vcpus, folder, disks,
                                      os_name, dirty))
        return tuple(result)

    def disks(
        self, where: str, table: dict[str, Any], server: str, srs: tuple[SrConfig, ...]
    ) -> tuple[DiskConfig, ...]:
        raw = self.tables(
            table, where, "disks", '[{ sr = "Local storage", size_mib = 128 }]', default=[]
        )
        if len(raw) > 26:
            self.fail(_key(where, "disks"), f"{len(raw)} disks; a guest has at most 26 (vda-vdz).")
        result: list[DiskConfig] = []
        for j, disk in enumerate(raw):
            dwhere = f"{where}.disks[{j}]"
            self.check_keys(dwhere, disk, ("sr", "size_mib", "format", "dev", "data_mib"))
            sr = self.string(disk, dwhere, "sr", '"Local storage"')
            self.sr_ref(_key(dwhere, "sr"), sr, server, srs)
            size = self.integer(disk, dwhere, "size_mib", "128", PATTERN_SIZE_MIB, 1 << 20)
            fmt = self.string(disk, dwhere, "format", '"qcow2"', default="qcow2")
            if fmt not in DISK_FORMATS:
                self.fail(
                    _key(dwhere, "format"),
                    f"{fmt!r} is not supported; use one of: {', '.join(DISK_FORMATS)}.",
                )
            dev = self.string(disk, dwhere, "dev", '"vdb"', default=f"vd{chr(ord('a') + j)}")
            if not _DISK_DEV.fullmatch(dev):
                self.fail(_key(dwhere, "dev"), f"{dev!r} is not a virtio disk name; use vda-vdz.")
            if any(d.dev == dev for d in result):
                self.fail(
                    _key(dwhere, "dev"),
                    f"{dev} is already used by another disk of this guest; give each disk its own.",
                )
            data = self.integer(disk, dwhere, "data_mib", "64", PATTERN_SIZE_MIB, size,
                                default=PATTERN_SIZE_MIB)
            result.append(DiskConfig(dev, sr, size, fmt, data))
        return tuple(result)


def _key(where: str, key: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        key = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{where}.{key}" if where else key


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_table(value: object) -> bool:
    return isinstance(value, dict)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_table_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)
