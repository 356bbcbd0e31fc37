"""The inventory file: which libvirt servers we manage, how they are grouped into pools,
and which networks they share.

Wrong files are refused with a message that names the file, the key and the fix.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xencenter_lite.core.policy import (
    DEFAULT_MAX_DOWNTIME_MS,
    MigrationSettings,
    OnTimeout,
    Policy,
)
from xencenter_lite.core.units import MIB

ENV_VAR = "XENCENTER_LITE_INVENTORY"


class InventoryError(Exception):
    """A problem with the inventory file; the message says where and how to fix it."""


@dataclass(frozen=True)
class ServerConfig:
    name: str
    uri: str
    networks: dict[str, str] = field(default_factory=dict)  # network -> address
    vm_memory_limit: int | None = None  # bytes
    default_sr: str | None = None


@dataclass(frozen=True)
class PoolConfig:
    name: str
    members: tuple[str, ...]
    default_sr: str | None = None
    ha_enabled: bool = False


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    rate: int | None = None  # bytes per second


@dataclass(frozen=True)
class InventoryConfig:
    path: Path
    servers: tuple[ServerConfig, ...]
    pools: tuple[PoolConfig, ...] = ()
    networks: tuple[NetworkConfig, ...] = ()
    management_network: str | None = None
    migration: MigrationSettings = field(default_factory=MigrationSettings)  # the defaults

    def server(self, name: str) -> ServerConfig | None:
        return next((s for s in self.servers if s.name == name), None)

    def pool_of(self, server: str) -> PoolConfig | None:
        return next((p for p in self.pools if server in p.members), None)


def default_inventory_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "xencenter-lite" / "inventory.toml"


def resolve_inventory_path(explicit: str | os.PathLike[str] | None) -> Path:
    """--inventory wins, then $XENCENTER_LITE_INVENTORY, then the user's config dir."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return default_inventory_path()


def redact_uri(uri: str) -> str:
    """The URI with any password replaced, fit for logs and messages."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def same_uri(a: str, b: str) -> bool:
    """Two libvirt URIs that are written differently but reach the same daemon the same
    way (case of scheme and host, a trailing slash). Servers reached by different URIs are
    told apart by the host UUID libvirt reports once connected."""
    def norm(uri: str) -> tuple[str, str, str, str]:
        try:
            p = urlsplit(uri.strip())
        except ValueError:
            return (uri, "", "", "")
        return (p.scheme.lower(), p.netloc.lower(), p.path.rstrip("/") or "/", p.query)

    return norm(a) == norm(b)


def redact_secret(text: str, uri: str) -> str:
    """`text` with the URI's password (if it has one) blanked out wherever it appears."""
    try:
        password = urlsplit(uri).password
    except ValueError:
        return text
    return text.replace(password, "***") if password else text


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str, fix: str) -> InventoryError:
        return InventoryError(f"{self.path}: {key}: {problem}; {fix}")

    def table(self, data: Any, key: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, f"expected a table, found {describe_value(data)}",
                            "write it as [table]")
        return data

    def known(self, data: dict[str, Any], key: str, allowed: set[str]) -> None:
        for k in data:
            if k not in allowed:
                where = f"{key}.{k}" if key else k
                raise self.fail(
                    where, "unknown key", f"use one of: {', '.join(sorted(allowed))}"
                )

    def string(self, data: dict[str, Any], key: str, name: str, *, required: bool) -> str | None:
        value = data.get(name)
        where = f"{key}.{name}" if key else name
        if value is None:
            if required:
                raise self.fail(where, "missing", f'add {name} = "..."')
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"expected a non-empty string, found {describe_value(value)}",
                            f'write {name} = "..."')
        return value

    def positive_int(self, data: dict[str, Any], key: str, name: str) -> int | None:
        value = data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(f"{key}.{name}", f"expected a positive whole number, found "
                            f"{describe_value(value)}", f"write {name} = 1024")
        return value


def describe_value(value: object) -> str:
    """A TOML value as an error message names it: "an integer (5)", "a table"."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a decimal number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


_URI_SCHEMES = ("qemu", "qemu+unix", "qemu+ssh", "qemu+tls", "qemu+tcp", "qemu+libssh2",
                "qemu+libssh", "test")


def load_inventory(path: str | os.PathLike[str]) -> InventoryConfig:
    """Read and validate an inventory file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InventoryError(
            f"{p}: no such inventory file; create it, pass --inventory PATH, or set "
            f"{ENV_VAR} (the lab writes one: xencenter-lite lab up)"
        ) from None
    except OSError as exc:
        raise InventoryError(
            f"{p}: cannot read it ({exc.strerror}); check its permissions"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InventoryError(f"{p}: not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{p}: not valid TOML ({exc}); fix the syntax there") from None
    return parse_inventory(data, p)


def parse_inventory(data: dict[str, Any], path: Path) -> InventoryConfig:
    r = _Reader(path)
    r.known(data, "", {"management_network", "networks", "servers", "pools", "migration"})

    networks: list[NetworkConfig] = []
    net_table = r.table(data.get("networks", {}), "networks")
    for net_name, net in net_table.items():
        key = f"networks.{net_name}"
        net = r.table(net, key)
        r.known(net, key, {"rate_mib_s"})
        rate = r.positive_int(net, key, "rate_mib_s")
        networks.append(NetworkConfig(net_name, rate * MIB if rate else None))

    raw_servers = data.get("servers")
    if not isinstance(raw_servers, list) or not raw_servers:
        raise r.fail("servers", "no servers listed",
                     'add at least one [[servers]] table with name and uri')
    servers: list[ServerConfig] = []
    for i, srv in enumerate(raw_servers):
        key = f"servers[{i}]"
        srv = r.table(srv, key)
        r.known(srv, key, {"name", "uri", "networks", "vm_memory_limit_mib", "default_sr"})
        name = r.string(srv, key, "name", required=True)
        assert name is not None
        if any(s.name == name for s in servers):
            raise r.fail(f"{key}.name", f"duplicate server name '{name}'",
                         "give each server its own name")
        uri = r.string(srv, key, "uri", required=True)
        assert uri is not None
        scheme = uri.split(":", 1)[0] if ":" in uri else ""
        if scheme not in _URI_SCHEMES:
            raise r.fail(f"{key}.uri", f"'{redact_uri(uri)}' is not a libvirt QEMU URI",
                         'write it like "qemu+ssh://root@host/system"')
        twin = next((s for s in servers if same_uri(s.uri, uri)), None)
        if twin is not None:
            raise r.fail(f"{key}.uri", f"'{name}' has the URI of server '{twin.name}' "
                         f"({redact_uri(uri)}): both entries reach the same server",
                         "list each server once; remove one of the two entries")
        addrs = r.table(srv.get("networks", {}), f"{key}.networks")
        for net_name, addr in addrs.items():
            if not isinstance(addr, str) or not addr:
                raise r.fail(f"{key}.networks.{net_name}", f"expected an address, found "
                             f"{describe_value(addr)}", f'write {net_name} = "192.0.2.10"')
        limit = r.positive_int(srv, key, "vm_memory_limit_mib")
        servers.append(ServerConfig(
            name=name, uri=uri, networks=dict(addrs),
            vm_memory_limit=limit * MIB if limit else None,
            default_sr=r.string(srv, key, "default_sr", required=False),
        ))

    server_names = {s.name for s in servers}
    pools: list[PoolConfig] = []
    raw_pools = data.get("pools", [])
    if not isinstance(raw_pools, list):
        raise r.fail("pools", f"expected a list of tables, found {describe_value(raw_pools)}",
                     "write each pool as a [[pools]] table")
    pooled: dict[str, str] = {}
    for i, pool in enumerate(raw_pools):
        key = f"pools[{i}]"
        pool = r.table(pool, key)
        r.known(pool, key, {"name", "members", "default_sr", "ha_enabled"})
        name = r.string(pool, key, "name", required=True)
        assert name is not None
        if any(p.name == name for p in pools):
            raise r.fail(f"{key}.name", f"duplicate pool name '{name}'",
                         "give each pool its own name")
        members = pool.get("members")
        if not isinstance(members, list) or not members or not all(
            isinstance(m, str) for m in members
        ):
            raise r.fail(f"{key}.members", "expected a non-empty list of server names",
                         'write members = ["server-1", "server-2"]')
        for m in members:
            if m not in server_names:
                raise r.fail(f"{key}.members", f"no server named '{m}'",
                             "list only servers declared under [[servers]]")
            if m in pooled:
                raise r.fail(f"{key}.members", f"'{m}' is already in pool '{pooled[m]}'",
                             "a server belongs to one pool at most")
            pooled[m] = name
        ha = pool.get("ha_enabled", False)
        if not isinstance(ha, bool):
            raise r.fail(f"{key}.ha_enabled", f"expected true or false, found {describe_value(ha)}",
                         "write ha_enabled = false")
        pools.append(PoolConfig(name, tuple(members),
                                r.string(pool, key, "default_sr", required=False), ha))

    mgmt = r.string(data, "", "management_network", required=False)
    net_names = {n.name for n in networks} | {
        n for s in servers for n in s.networks
    }
    if mgmt is not None and mgmt not in net_names:
        raise r.fail("management_network", f"no network named '{mgmt}'",
                     f"use one of: {', '.join(sorted(net_names))}" if net_names else
                     f"declare it as [networks.{mgmt}] and give each server an address on it")
    for n in net_names - {n.name for n in networks}:
        networks.append(NetworkConfig(n))
    networks.sort(key=lambda n: n.name)
    return InventoryConfig(path, tuple(servers), tuple(pools), tuple(networks), mgmt,
                           _migration_settings(r, data.get("migration", {})))


def _migration_settings(r: _Reader, raw: Any) -> MigrationSettings:
    """The [migration] table: the defaults of every live migration (see core.policy)."""
    key = "migration"
    table = r.table(raw, key)
    r.known(table, key, {"policy", "max_downtime_ms", "timeout_s", "on_timeout", "compression",
                         "parallel"})

    def choice(name: str, enum: type[Policy] | type[OnTimeout], default: Any) -> Any:
        value = table.get(name)
        if value is None:
            return default
        names = [e.value for e in enum]
        if value not in names:
            raise r.fail(f"{key}.{name}", f"{describe_value(value)} is not one of them",
                         "write one of: " + ", ".join(f'{name} = "{n}"' for n in names))
        return enum(value)

    compression = table.get("compression", False)
    if not isinstance(compression, bool):
        raise r.fail(f"{key}.compression", f"expected true or false, found "
                     f"{describe_value(compression)}", "write compression = false")
    settings = MigrationSettings(
        policy=choice("policy", Policy, Policy.AUTO_CONVERGE),
        max_downtime_ms=r.positive_int(table, key, "max_downtime_ms")
        or DEFAULT_MAX_DOWNTIME_MS,
        timeout_s=r.positive_int(table, key, "timeout_s"),
        on_timeout=choice("on_timeout", OnTimeout, OnTimeout.ABORT),
        compression=compression,
        parallel=r.positive_int(table, key, "parallel"))
    for problem in settings.problems():
        raise r.fail(key, problem.rstrip("."), "fix the [migration] table")
    return settings
