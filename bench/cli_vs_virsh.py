"""How long a full storage migration of the lab's two-disk guest takes through
`xencenter-lite migrate` and through `virsh migrate` with the same flags, alternating.

Run as root from the repository (the lab must be up, or pass --lab-up):

    .venv/bin/python bench/cli_vs_virsh.py --bytecode --rounds 7

Each round moves db-1 from one server to the other and back, once with each tool, and the
tool that goes first alternates from round to round. Both tools do the same work: create
the destination volumes, live-migrate memory and disks over the storage network (LIVE,
PEER2PEER, PERSIST_DEST, UNDEFINE_SOURCE, NON_SHARED_DISK, the same URIs), then remove the
source volumes. The virsh side is timed twice: `virsh migrate` alone, and with the volume
commands an operator would run around it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from xencenter_lite.core.domxml import parse_domain, rewrite_domain
from xencenter_lite.core.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[1]
VM = "db-1"
SERVERS = ("lab-a1", "lab-b1")
SR = "Local storage"


CLI_ENV = dict(os.environ)


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True,
                          env=CLI_ENV).stdout


def cli_exe() -> str:
    return str(Path(sys.executable).parent / "xencenter-lite")


def where(inventory: Path) -> str:
    data = json.loads(sh(cli_exe(), "--inventory", str(inventory), "list", "--json"))
    return next(v["server"] for v in data["vms"] if v["name"] == VM)


def run_cli(inventory: Path, dest: str) -> float:
    t0 = time.monotonic()
    sh(cli_exe(), "--inventory", str(inventory), "migrate", VM, "--to", dest, "--sr", SR,
       "--json")
    return time.monotonic() - t0


def run_virsh(inv: dict[str, dict[str, str]], src: str, dest: str,
              vm: str = VM) -> tuple[float, float]:
    """Move `vm` as an operator would with virsh alone; (migrate call, whole) seconds."""
    s, d = inv[src], inv[dest]
    t0 = time.monotonic()
    xml = sh("virsh", "-c", s["uri"], "dumpxml", "--migratable", vm)
    conf = sh("virsh", "-c", s["uri"], "dumpxml", "--migratable", "--inactive", vm)
    dom = parse_domain(xml)
    new_paths = {}
    for disk in dom.disks:
        if disk.device != "disk" or not disk.path:
            continue
        name = os.path.basename(disk.path)
        cap = sh("virsh", "-c", s["uri"], "vol-info", "--bytes", disk.path)
        capacity = next(line.split()[1] for line in cap.splitlines()
                        if line.startswith("Capacity"))
        sh("virsh", "-c", d["uri"], "vol-create-as", SR, name, f"{capacity}b", "--format",
           disk.format)
        new_paths[disk.dev] = sh("virsh", "-c", d["uri"], "vol-path", "--pool", SR,
                                 name).strip()
    with tempfile.TemporaryDirectory() as tmp:
        live, persist = Path(tmp, "live.xml"), Path(tmp, "persist.xml")
        live.write_text(rewrite_domain(xml, new_paths))
        persist.write_text(rewrite_domain(conf, new_paths))
        addr = d["storage"]
        t1 = time.monotonic()
        sh("virsh", "-c", s["uri"], "migrate", "--live", "--p2p", "--persistent",
           "--undefinesource", "--copy-storage-all", "--migrate-disks", ",".join(new_paths),
           "--xml", str(live), "--persistent-xml", str(persist), "--migrateuri",
           f"tcp://{addr}", "--disks-uri", f"tcp://{addr}", "--listen-address", addr,
           vm, d["uri"])
        migrate_only = time.monotonic() - t1
    for disk in dom.disks:
        if disk.device == "disk" and disk.path:
            sh("virsh", "-c", s["uri"], "vol-delete", disk.path)
    return migrate_only, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--inventory", default="/var/lib/xencenter-lite/lab/inventory.toml")
    ap.add_argument("--lab-up", action="store_true", help="bring the demo lab up first")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench-cli-vs-virsh.json"))
    ap.add_argument("--bytecode", action="store_true",
                    help="let Python cache compiled modules (in a temporary directory) even "
                         "when PYTHONDONTWRITEBYTECODE is set, as an installed package has them")
    args = ap.parse_args()
    cache = tempfile.TemporaryDirectory(prefix="xcl-pycache-")
    if args.bytecode:
        CLI_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        CLI_ENV["PYTHONPYCACHEPREFIX"] = cache.name
    if args.lab_up:
        inventory = Path(sh(cli_exe(), "lab", "up").strip().splitlines()[-1])
    else:
        inventory = Path(args.inventory)
    cfg = load_inventory(inventory)
    inv = {s.name: {"uri": s.uri, **s.networks} for s in cfg.servers}

    ours: list[float] = []
    virsh_migrate: list[float] = []
    virsh_total: list[float] = []
    for i in range(args.rounds):
        order = ("cli", "virsh") if i % 2 == 0 else ("virsh", "cli")
        for tool in order:
            src = where(inventory)
            dest = SERVERS[1] if src == SERVERS[0] else SERVERS[0]
            if tool == "cli":
                ours.append(run_cli(inventory, dest))
                print(f"round {i + 1}: xencenter-lite {src}->{dest} {ours[-1]:.2f} s")
            else:
                m, t = run_virsh(inv, src, dest)
                virsh_migrate.append(m)
                virsh_total.append(t)
                print(f"round {i + 1}: virsh {src}->{dest} migrate {m:.2f} s, with volume "
                      f"commands {t:.2f} s")

    def summary(xs: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3),
                "max": round(max(xs), 3)}

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        "rounds": args.rounds,
        "bytecode_cached": bool(args.bytecode) or not os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "xencenter_lite_migrate": summary(ours),
        "virsh_migrate_only": summary(virsh_migrate),
        "virsh_with_volume_commands": summary(virsh_total),
        "ratio_to_virsh_migrate": round(statistics.median(ours)
                                        / statistics.median(virsh_migrate), 3),
        "ratio_to_virsh_with_volumes": round(statistics.median(ours)
                                             / statistics.median(virsh_total), 3),
        "samples": {"xencenter_lite": ours, "virsh_migrate": virsh_migrate,
                    "virsh_total": virsh_total},
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
