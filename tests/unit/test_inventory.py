"""The inventory file: good files load, bad ones are refused with file, key and fix."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xencenter_lite.core.inventory import (
    ENV_VAR,
    MIB,
    InventoryConfig,
    InventoryError,
    NetworkConfig,
    default_inventory_path,
    load_inventory,
    parse_inventory,
    redact_uri,
    resolve_inventory_path,
)
from xencenter_lite.core.policy import MigrationSettings, OnTimeout, Policy

VALID = """\
management_network = "management"

[networks.management]
rate_mib_s = 25

[networks.storage]
rate_mib_s = 200

[[servers]]
name = "lab-a1"
uri = "qemu+ssh://root@192.0.2.11/system"
vm_memory_limit_mib = 4096
[servers.networks]
management = "192.0.2.11"
storage = "198.51.100.11"

[[servers]]
name = "lab-a2"
uri = "qemu+tls://192.0.2.12/system"
[servers.networks]
management = "192.0.2.12"
storage = "198.51.100.12"

[[servers]]
name = "lab-b1"
uri = "qemu:///system"
default_sr = "Local storage"
[servers.networks]
management = "192.0.2.21"
backup = "203.0.113.21"

[[pools]]
name = "Production"
members = ["lab-a1", "lab-a2"]
default_sr = "Shared storage"
ha_enabled = true
"""


def write(tmp_path: Path, text: str | bytes, name: str = "inventory.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refused(tmp_path: Path, text: str | bytes) -> str:
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


# ---- a good file ----------------------------------------------------------------------------
def test_valid_inventory_loads(tmp_path):
    path = write(tmp_path, VALID)
    inv = load_inventory(path)
    assert isinstance(inv, InventoryConfig)
    assert inv.path == path
    assert inv.management_network == "management"
    assert [s.name for s in inv.servers] == ["lab-a1", "lab-a2", "lab-b1"]

    a1 = inv.server("lab-a1")
    assert a1 is not None
    assert a1.uri == "qemu+ssh://root@192.0.2.11/system"
    assert a1.networks == {"management": "192.0.2.11", "storage": "198.51.100.11"}
    assert a1.vm_memory_limit == 4096 * MIB
    assert a1.default_sr is None
    b1 = inv.server("lab-b1")
    assert b1 is not None and b1.default_sr == "Local storage" and b1.vm_memory_limit is None
    assert inv.server("nope") is None

    (pool,) = inv.pools
    assert (pool.name, pool.members, pool.default_sr, pool.ha_enabled) == (
        "Production", ("lab-a1", "lab-a2"), "Shared storage", True)
    assert inv.pool_of("lab-a2") is pool
    assert inv.pool_of("lab-b1") is None

    # declared networks keep their rate; one only named by a server appears without one
    assert inv.networks == (
        NetworkConfig("backup", None),
        NetworkConfig("management", 25 * MIB),
        NetworkConfig("storage", 200 * MIB),
    )


def test_minimal_inventory(tmp_path):
    inv = load_inventory(write(tmp_path, '[[servers]]\nname = "x"\nuri = "test:///default"\n'))
    assert [s.name for s in inv.servers] == ["x"]
    assert (inv.pools, inv.networks, inv.management_network) == ((), (), None)
    assert inv.servers[0].networks == {}


def test_pool_defaults(tmp_path):
    text = VALID.replace("ha_enabled = true\n", "").replace(
        'default_sr = "Shared storage"\n', "")
    (pool,) = load_inventory(write(tmp_path, text)).pools
    assert pool.ha_enabled is False and pool.default_sr is None


# ---- bad files ------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    msg = str(info.value)
    assert str(path) in msg and "no such inventory file" in msg
    assert "--inventory" in msg and ENV_VAR in msg


def test_unreadable_path(tmp_path):
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path)  # a directory
    assert str(tmp_path) in str(info.value) and "cannot read it" in str(info.value)


def test_invalid_toml(tmp_path):
    msg = refused(tmp_path, '[[servers]]\nname = "x\n')
    assert "not valid TOML" in msg and "fix the syntax" in msg
    assert "line 2" in msg  # tomllib's position is kept


def test_not_utf8(tmp_path):
    msg = refused(tmp_path, b'[[servers]]\nname = "caf\xe9"\nuri = "qemu:///system"\n')
    assert "not UTF-8" in msg and "save it as UTF-8" in msg



BAD_FILES: list[tuple[str, str, str, list[str]]] = [
    # (id, text, key named in the message, words of the problem and the fix)
    ("unknown top-level key", 'colour = "blue"\n' + VALID, "colour",
     ["unknown key", "use one of", "servers"]),
    ("unknown server key", VALID.replace('default_sr = "Local storage"',
                                         'default_sr = "Local storage"\nram = 4'),
     "servers[2].ram", ["unknown key", "vm_memory_limit_mib"]),
    ("unknown pool key", VALID.replace("ha_enabled = true", "ha = true"),
     "pools[0].ha", ["unknown key", "ha_enabled"]),
    ("unknown network key", VALID.replace("rate_mib_s = 25", "rate = 25"),
     "networks.management.rate", ["unknown key", "rate_mib_s"]),
    ("no servers", 'management_network = "m"\n[networks.m]\n', "servers",
     ["no servers listed", "[[servers]]"]),
    ("duplicate server", VALID.replace('name = "lab-a2"', 'name = "lab-a1"'),
     "servers[1].name", ["duplicate server name 'lab-a1'", "its own name"]),
    ("the same URI twice", VALID.replace("qemu+tls://192.0.2.12/system",
                                         "qemu+ssh://root@192.0.2.11/system"),
     "servers[1].uri", ["'lab-a2' has the URI of server 'lab-a1'", "reach the same server",
                        "remove one of the two entries"]),
    ("the same URI written differently", VALID.replace(
        "qemu+tls://192.0.2.12/system", "qemu+ssh://root@192.0.2.11/system/"),
     "servers[1].uri", ["'lab-a2' has the URI of server 'lab-a1'"]),
    ("duplicate pool", VALID + '[[pools]]\nname = "Production"\nmembers = ["lab-b1"]\n',
     "pools[1].name", ["duplicate pool name 'Production'", "its own name"]),
    ("pool member unknown", VALID.replace('["lab-a1", "lab-a2"]', '["lab-a1", "lab-a9"]'),
     "pools[0].members", ["no server named 'lab-a9'", "[[servers]]"]),
    ("server in two pools", VALID + '[[pools]]\nname = "Test"\nmembers = ["lab-a2"]\n',
     "pools[1].members", ["'lab-a2' is already in pool 'Production'", "one pool at most"]),
    ("empty members", VALID.replace('["lab-a1", "lab-a2"]', "[]"),
     "pools[0].members", ["non-empty list", "members = ["]),
    ("bad uri scheme", VALID.replace("qemu+tls://192.0.2.12/system", "xen://192.0.2.12/"),
     "servers[1].uri", ["is not a libvirt QEMU URI", "qemu+ssh://"]),
    ("uri without scheme", VALID.replace("qemu+tls://192.0.2.12/system", "192.0.2.12"),
     "servers[1].uri", ["is not a libvirt QEMU URI"]),
    ("missing name", VALID.replace('name = "lab-b1"\n', ""),
     "servers[2].name", ["missing", 'add name = "..."']),
    ("missing uri", VALID.replace('uri = "qemu:///system"\n', ""),
     "servers[2].uri", ["missing", 'add uri = "..."']),
    ("string for memory limit", VALID.replace("4096", '"4096"'),
     "servers[0].vm_memory_limit_mib", ["expected a positive whole number, found a string ('4096')",
                                        "write vm_memory_limit_mib = 1024"]),
    ("negative memory limit", VALID.replace("4096", "-1"),
     "servers[0].vm_memory_limit_mib", ["positive whole number", "an integer (-1)"]),
    ("float memory limit", VALID.replace("4096", "4096.5"),
     "servers[0].vm_memory_limit_mib", ["positive whole number", "a decimal number (4096.5)"]),
    ("bool rate", VALID.replace("rate_mib_s = 25", "rate_mib_s = true"),
     "networks.management.rate_mib_s", ["positive whole number", "a boolean (true)"]),
    ("string rate", VALID.replace("rate_mib_s = 200", 'rate_mib_s = "fast"'),
     "networks.storage.rate_mib_s", ["found a string ('fast')", "write rate_mib_s = 1024"]),
    ("number for name", VALID.replace('name = "lab-b1"', "name = 7"),
     "servers[2].name", ["expected a non-empty string, found an integer (7)",
                         'write name = "..."']),
    ("number for default_sr", VALID.replace('default_sr = "Shared storage"', "default_sr = 3"),
     "pools[0].default_sr", ["expected a non-empty string, found an integer (3)"]),
    ("blank name", VALID.replace('name = "lab-b1"', 'name = "  "'),
     "servers[2].name", ["non-empty string"]),
    ("string for ha_enabled", VALID.replace("ha_enabled = true", 'ha_enabled = "true"'),
     "pools[0].ha_enabled", ["expected true or false, found a string ('true')",
                             "write ha_enabled = false"]),
    ("number for address", VALID.replace('backup = "203.0.113.21"', "backup = 1"),
     "servers[2].networks.backup", ["expected an address, found an integer (1)",
                                    'write backup = "192.0.2.10"']),
    ("networks not a table", 'networks = ["a"]\n' + VALID.split("[networks.")[0]
     + "[[servers]]" + VALID.split("[[servers]]", 1)[1],
     "networks", ["expected a table, found an array"]),
    ("pools not a list", 'pools = "all"\n' + VALID.split("[[pools]]")[0],
     "pools", ["expected a list of tables", "a string ('all')", "[[pools]]"]),
    ("management network unknown", VALID.replace('management_network = "management"',
                                                 'management_network = "mgmt"'),
     "management_network", ["no network named 'mgmt'", "use one of: backup, management, "
                                                       "storage"]),
    ("unknown migration policy", VALID + '[migration]\npolicy = "fast"\n',
     "migration.policy", ["a string ('fast')", 'policy = "auto-converge"']),
    ("migration downtime out of range", VALID + "[migration]\nmax_downtime_ms = 5\n",
     "migration", ["out of range", "10 to 60000"]),
    ("unknown migration key", VALID + "[migration]\nspeed = 3\n",
     "migration.speed", ["unknown key", "max_downtime_ms"]),
    ("management network with no networks at all",
     'management_network = "mgmt"\n[[servers]]\nname = "x"\nuri = "qemu:///system"\n',
     "management_network", ["no network named 'mgmt'", "[networks.mgmt]"]),
]


@pytest.mark.parametrize(("text", "key", "words"), [b[1:] for b in BAD_FILES],
                         ids=[b[0] for b in BAD_FILES])
def test_bad_file_names_file_key_and_fix(tmp_path, text, key, words):
    tomllib.loads(text)  # the file itself is valid TOML; the content is wrong
    msg = refused(tmp_path, text)
    assert f": {key}: " in msg, msg
    for word in words:
        assert word in msg, (word, msg)
    assert "; " in msg.split(f": {key}: ", 1)[1], "the message must end with a fix"


def test_bad_uri_message_hides_password(tmp_path):
    text = VALID.replace("qemu+tls://192.0.2.12/system", "ftp://root:s3cret@192.0.2.12/")
    msg = refused(tmp_path, text)
    assert "s3cret" not in msg and "***" in msg


@pytest.mark.parametrize("scheme", ["qemu", "qemu+unix", "qemu+ssh", "qemu+tls", "qemu+tcp",
                                    "qemu+libssh2", "qemu+libssh", "test"])
def test_accepted_uri_schemes(tmp_path, scheme):
    text = VALID.replace("qemu+tls://192.0.2.12/system", f"{scheme}://192.0.2.12/system")
    assert load_inventory(write(tmp_path, text)).servers[1].uri.startswith(f"{scheme}://")


# ---- where the file is ----------------------------------------------------------------------
def test_resolve_explicit_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert resolve_inventory_path(tmp_path / "cli.toml") == tmp_path / "cli.toml"
    assert resolve_inventory_path(str(tmp_path / "cli.toml")) == tmp_path / "cli.toml"


def test_resolve_env_next(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert resolve_inventory_path(None) == tmp_path / "env.toml"
    assert resolve_inventory_path("") == tmp_path / "env.toml"


def test_resolve_xdg_default(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    expected = tmp_path / "xdg" / "xencenter-lite" / "inventory.toml"
    assert resolve_inventory_path(None) == expected
    monkeypatch.setenv(ENV_VAR, "")  # empty means unset
    assert resolve_inventory_path(None) == expected


def test_default_path_without_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_inventory_path() == tmp_path / ".config" / "xencenter-lite" / "inventory.toml"


# ---- redact_uri -----------------------------------------------------------------------------
def test_redact_uri_hides_password():
    out = redact_uri("qemu+ssh://root:hunter2@host.example/system?keyfile=/k")
    assert out == "qemu+ssh://root:***@host.example/system?keyfile=/k"
    assert "hunter2" not in redact_uri("qemu+tcp://admin:p@ss:w0rd@10.0.0.1:16509/system")


def test_redact_uri_keeps_uris_without_password():
    for uri in ("qemu:///system", "qemu+ssh://root@host/system", "test:///default"):
        assert redact_uri(uri) == uri


def test_redact_uri_unparsable():
    assert redact_uri("qemu+ssh://[::1/system") == "<unparsable URI>"


# ---- fuzzing --------------------------------------------------------------------------------
def toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in doc.items())


KEYS = st.sampled_from(["name", "uri", "members", "networks", "servers", "pools",
                        "management_network", "rate_mib_s", "vm_memory_limit_mib",
                        "default_sr", "ha_enabled", "management", "storage", "lab-a1"])
SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["lab-a1", "lab-a2", "management", "storage", "qemu:///system",
                     "qemu+ssh://root:pw@h/system", "test:///default", "qemu+ssh://[::1",
                     "Shared storage", "", " "]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(KEYS | st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)


def base_doc() -> dict[str, Any]:
    return tomllib.loads(VALID)


@st.composite
def near_valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    """The valid inventory with a few values replaced, removed or added anywhere in it."""
    doc = base_doc()
    for _ in range(draw(st.integers(1, 4))):
        node: Any = doc
        while True:  # walk down to a random container
            children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            containers = [(k, v) for k, v in children if isinstance(v, dict | list) and v]
            if not containers or draw(st.booleans()):
                break
            node = draw(st.sampled_from(containers))[1]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if action == "add" or not keys:
            if isinstance(node, dict):
                node[draw(KEYS)] = draw(VALUES)
            else:
                node.append(draw(VALUES))
            continue
        key = draw(st.sampled_from(keys))
        if action == "delete":
            del node[key]
        else:
            node[key] = draw(VALUES)
    return doc


DOCS = st.one_of(near_valid_docs(), st.dictionaries(KEYS, VALUES, max_size=5))


def assert_consistent(inv: InventoryConfig) -> None:
    names = [s.name for s in inv.servers]
    assert names and len(set(names)) == len(names)
    members = [m for p in inv.pools for m in p.members]
    assert set(members) <= set(names) and len(set(members)) == len(members)
    assert all(isinstance(p.ha_enabled, bool) for p in inv.pools)
    if inv.management_network is not None:
        assert inv.management_network in {n.name for n in inv.networks}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS)
def test_any_document_gives_config_or_inventory_error(doc):
    path = Path("/nonexistent/inventory.toml")
    try:
        inv = parse_inventory(doc, path)
    except InventoryError as exc:
        assert str(exc).startswith(f"{path}: ")
    else:
        assert_consistent(inv)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=DOCS)
def test_any_written_document_loads_or_is_refused(tmp_path_factory, doc):
    text = to_toml(doc)
    assert tomllib.loads(text) == doc  # the tiny writer is right
    path = tmp_path_factory.getbasetemp() / "fuzz-inventory.toml"
    path.write_text(text, encoding="utf-8")
    try:
        inv = load_inventory(path)
    except InventoryError as exc:
        assert str(exc).startswith(f"{path}: ")
    else:
        assert_consistent(inv)


@settings(max_examples=200, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda a, b: a + b, st.just(VALID.encode()), st.binary(max_size=20)),
    st.builds(lambda t, n: t.encode()[:n], st.just(VALID), st.integers(0, len(VALID))),
))
def test_random_bytes_give_only_inventory_error(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz-bytes.toml"
    path.write_bytes(data)
    try:
        inv = load_inventory(path)
    except InventoryError as exc:
        assert str(exc).startswith(f"{path}: ")
    else:
        assert_consistent(inv)


def test_redact_secret_blanks_the_uri_password_wherever_it_appears() -> None:
    from xencenter_lite.core.inventory import redact_secret

    uri = "qemu+tcp://admin:hunter2@host/system"
    text = "cannot connect to qemu+tcp://admin:hunter2@host/system (hunter2 rejected)"
    assert redact_secret(text, uri) == ("cannot connect to qemu+tcp://admin:***@host/system "
                                        "(*** rejected)")
    assert redact_secret(text, "qemu:///system") == text


def test_migration_defaults_come_from_the_migration_table(tmp_path):
    assert load_inventory(write(tmp_path, VALID)).migration == MigrationSettings()
    inv = load_inventory(write(tmp_path, VALID + '[migration]\npolicy = "post-copy"\n'
                               'max_downtime_ms = 500\ntimeout_s = 120\n'
                               'on_timeout = "suspend"\ncompression = true\n'))
    assert inv.migration == MigrationSettings(Policy.POST_COPY, 500, 120, OnTimeout.SUSPEND,
                                              compression=True)
