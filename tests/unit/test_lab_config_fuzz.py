"""The lab's TOML, mangled every which way: a clear LabConfigError or a sound config,
never a traceback, and reading it writes nothing."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_inventory import VALUES, to_toml
from xencenter_lite.lab import DEFAULT_CONFIG_PATH, LabConfig, LabConfigError, load_lab_config

LAB_KEYS = st.sampled_from(["name", "state_dir", "accel", "networks", "subnet", "rate_mib_s", "mtu",
                            "management", "servers", "host_number", "vm_memory_limit_mib",
                            "default_sr", "pools", "members", "ha_enabled", "srs", "shared",
                            "size_mib", "guests", "server", "state", "memory_mib", "vcpus",
                            "folder", "disks", "sr", "format", "dev", "storage"])


@st.composite
def mangled_lab_docs(draw: st.DrawFn) -> dict[str, Any]:
    doc = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    for _ in range(draw(st.integers(1, 4))):
        node: Any = doc
        while True:
            children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            containers = [(k, v) for k, v in children if isinstance(v, dict | list) and v]
            if not containers or draw(st.booleans()):
                break
            node = draw(st.sampled_from(containers))[1]
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add" or not keys:
            if isinstance(node, dict):
                node[draw(LAB_KEYS)] = draw(VALUES)
            else:
                node.append(draw(VALUES))
        elif action == "delete":
            del node[draw(st.sampled_from(keys))]
        else:
            node[draw(st.sampled_from(keys))] = draw(VALUES)
    return doc


def _sound(config: LabConfig) -> None:
    names = [s.name for s in config.servers]
    assert names and len(set(names)) == len(names)
    assert len({g.name for g in config.guests}) == len(config.guests)
    assert all(g.server in names for g in config.guests)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=mangled_lab_docs())
def test_a_mangled_lab_file_is_refused_clearly_or_loads_sound(tmp_path_factory: Any,
                                                              doc: dict[str, Any]) -> None:
    folder = tmp_path_factory.mktemp("labfuzz")
    path = Path(folder) / "lab.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    try:
        config = load_lab_config(path)
    except LabConfigError as exc:
        assert "lab.toml" in str(exc) and len(str(exc)) > 20
    else:
        _sound(config)
    assert sorted(p.name for p in Path(folder).iterdir()) == ["lab.toml"]  # nothing written


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_bytes_are_refused_clearly(tmp_path_factory: Any, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("labbytes")) / "lab.toml"
    path.write_bytes(data)
    try:
        config = load_lab_config(path)
    except LabConfigError as exc:
        assert "lab.toml" in str(exc)
    else:
        _sound(config)
