"""Migration policies against a guest that dirties memory faster than the link carries it.

Brings up bench/lab-policies.toml (two servers in a pool on shared storage, so the moves are
memory only, over a 10 MiB/s management network) and moves its guests back and forth:

- busy-1 (256 MiB, 24 MiB/s rewritten, its rate checked from its own console reports):
  `virsh migrate --live` with default flags, alternating with `xencenter-lite migrate` under
  each policy. Each run: finished or not within 10 x the one-pass time (virsh's job is
  aborted then), total time, libvirt's downtime and the downtime measured from the guest's own
  records (the jump in host time minus guest uptime of its console reports: a guest's clock
  stands still while it is stopped), the highest vCPU throttle, the policy's actions.
- quiet-1 (1 MiB/s): virsh against ours (auto-converge), alternating: the ratio of wall
  times (ours includes the command's own start and checks) and of the migration job's time
  as libvirt records it (what the policy itself costs).
- compression: busy-1 with auto-converge with and without --compress, bytes sent on the
  source's management interface and time.

(--unsafe is there for the lab's shared SR, a directory both servers see: libvirt cannot
tell it from a local one. It changes nothing else.)

`quiet` runs only the quiet guest (2 x --runs each) and updates those keys of --out.
`record` instead saves libvirt's job statistics of plain virsh migrations (busy and quiet)
as the sequences the Governor's unit tests replay (tests/unit/data/).

    python bench/policies.py [--runs N] [--out docs/bench-policies.json]
    python bench/policies.py quiet [--runs N]
    python bench/policies.py record
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.lab import load_lab_config
from xencenter_lite.lab.records import dirty_rates, serial_log
from xencenter_lite.virt.connection import LibvirtLink

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "bench" / "lab-policies.toml"
CLI = [sys.executable, "-m", "xencenter_lite.cli"]
SERVERS = ("lab-a1", "lab-a2")
_SEQ = re.compile(r"XCL seq=(\d+) t=(\d+\.\d+)")


def sh(*argv: str, check: bool = True, timeout: float | None = None) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True,
                          timeout=timeout).stdout


class Lab:
    def __init__(self) -> None:
        cfg = load_lab_config(CONFIG)
        self.state_dir = Path(cfg.state_dir)
        self.name = cfg.name
        sh(*CLI, "lab", "--config", str(CONFIG), "up")
        self.inventory = self.state_dir / "inventory.toml"
        inv = load_inventory(self.inventory)
        self.uri = {s.name: s.uri for s in inv.servers}
        self.addr = {s.name: s.networks["management"] for s in inv.servers}

    def where(self, vm: str) -> str:
        for server, uri in self.uri.items():
            if vm in sh("virsh", "-c", uri, "list", "--name").split():
                return server
        raise RuntimeError(f"{vm} runs nowhere")

    def uuid(self, vm: str) -> str:
        return sh("virsh", "-c", self.uri[self.where(vm)], "domuuid", vm).strip()

    def console(self, vm: str) -> str:
        return "".join(serial_log(self.state_dir, s, vm).read_bytes().decode(errors="replace")
                       for s in SERVERS if serial_log(self.state_dir, s, vm).exists())

    def tx_bytes(self, server: str) -> int:
        return int(sh("ip", "netns", "exec", f"{self.name}-{server}", "cat",
                      "/sys/class/net/management/statistics/tx_bytes"))


class Watch:
    """While a migration runs: libvirt's job statistics of the source (every 0.4 s) and the
    guest's console reports, each stamped with the host's clock when first seen."""

    def __init__(self, lab: Lab, vm: str, src: str, dest: str) -> None:
        self.lab, self.vm, self.src, self.dest = lab, vm, src, dest
        self.uuid = lab.uuid(vm)
        self.stats: list[dict[str, Any]] = []
        self.reports: list[tuple[float, int, float]] = []  # host time, seq, guest uptime
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.threads = [threading.Thread(target=self._stats, daemon=True),
                        threading.Thread(target=self._console, daemon=True)]
        for t in self.threads:
            t.start()
        time.sleep(4)  # reports from before the move, for the downtime

    def _stats(self) -> None:
        link = LibvirtLink(self.src, self.lab.uri[self.src])
        link.open()
        try:
            while not self.stop.is_set():
                try:
                    st = link.job_stats(self.uuid)
                except Exception:  # the domain went with the migration's end
                    st = {}
                if st:
                    self.stats.append({"t": round(time.monotonic() - self.t0, 3), **st})
                time.sleep(0.4)
        finally:
            link.close()

    def _console(self) -> None:
        offsets = {s: serial_log(self.lab.state_dir, s, self.vm) for s in (self.src, self.dest)}
        pos = {s: (p.stat().st_size if p.exists() else 0) for s, p in offsets.items()}
        seen: set[int] = set()
        while not self.stop.is_set():
            for s, p in offsets.items():
                try:
                    with p.open("rb") as f:
                        f.seek(pos[s])
                        chunk = f.read()
                except OSError:
                    continue
                if chunk.endswith(b"\n"):
                    pos[s] += len(chunk)
                    now = time.monotonic()
                    for m in _SEQ.finditer(chunk.decode(errors="replace")):
                        seq = int(m.group(1))
                        if seq not in seen:
                            seen.add(seq)
                            self.reports.append((now, seq, float(m.group(2))))
            time.sleep(0.01)

    def end(self, settle: float = 3.0) -> None:
        time.sleep(settle)  # reports after the move, for the downtime
        self.stop.set()
        for t in self.threads:
            t.join(5)

    def measured_downtime_ms(self, before: float, after: float) -> int | None:
        """The jump of (host time - guest uptime) over the move: the time the guest stood
        still. Each side's smallest offset (the report seen soonest after it was printed)."""
        pre = [h - g for h, _s, g in self.reports if h < before]
        post = [h - g for h, _s, g in self.reports if h > after]
        if len(pre) < 2 or len(post) < 2:
            return None
        return max(0, round(1000 * (min(post[-6:]) - min(pre[-6:]))))

    def one_pass_s(self) -> float | None:
        """When the second memory pass began: the time to copy the memory once."""
        starts = [s["t"] for s in self.stats if s.get("memory_iteration", 0) >= 2]
        return starts[0] if starts else None

    def max_throttle(self) -> int:
        return max((s.get("auto_converge_throttle", 0) for s in self.stats), default=0)


def completed(lab: Lab, server: str, vm: str, field: str) -> int | None:
    """A figure (ms) of the last completed migration job, as libvirt on server records it
    (kept for the next look: without --keep-completed the first look clears them)."""
    info = sh("virsh", "-c", lab.uri[server], "domjobinfo", "--completed", "--keep-completed",
              vm, check=False)
    m = re.search(rf"{field}:\s+(\d+)", info)
    return int(m.group(1)) if m else None


def seconds(ms: int | None) -> float | None:
    return None if ms is None else round(ms / 1000, 2)


def virsh_migrate(lab: Lab, vm: str, limit: float, extra: tuple[str, ...] = ()
                  ) -> tuple[dict[str, Any], Watch]:
    src = lab.where(vm)
    dest = next(s for s in SERVERS if s != src)
    w = Watch(lab, vm, src, dest)
    addr = lab.addr[dest]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["virsh", "-c", lab.uri[src], "migrate", "--live", "--p2p", "--persistent",
         "--undefinesource", "--unsafe", *extra, "--migrateuri", f"tcp://{addr}",
         "--listen-address", addr,
         vm, lab.uri[dest]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(limit)
        finished = proc.returncode == 0
    except subprocess.TimeoutExpired:
        sh("virsh", "-c", lab.uri[src], "domjobabort", vm, check=False)
        proc.wait(60)
        finished = False
    wall = time.monotonic() - t0
    w.end()
    row: dict[str, Any] = {"how": "virsh migrate --live" + (" " + " ".join(extra) if extra
                                                             else ""),
                           "finished": finished, "seconds": round(wall, 2)}
    if finished:
        row["libvirt_downtime_ms"] = completed(lab, dest, vm, "Total downtime")
        row["libvirt_seconds"] = seconds(completed(lab, dest, vm, "Time elapsed"))
        row["measured_downtime_ms"] = w.measured_downtime_ms(t0, t0 + wall)
    else:
        row["error"] = (proc.stderr.read() if proc.stderr else "").strip()[-200:]
    row["max_throttle"] = w.max_throttle()
    return row, w


def ours(lab: Lab, vm: str, *options: str) -> tuple[dict[str, Any], Watch]:
    src = lab.where(vm)
    dest = next(s for s in SERVERS if s != src)
    w = Watch(lab, vm, src, dest)
    t0 = time.monotonic()
    out = subprocess.run([*CLI, "--inventory", str(lab.inventory), "migrate", vm, "--to", dest,
                          *options, "--json"], capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - t0
    w.end()
    try:
        (res,) = json.loads(out.stdout)
    except ValueError:
        res = {"ok": False, "error": out.stdout[-300:] + out.stderr[-300:]}
    row: dict[str, Any] = {"how": "xencenter-lite migrate " + " ".join(options),
                           "finished": bool(res.get("ok")), "seconds": round(wall, 2),
                           "libvirt_downtime_ms": res.get("downtime_ms"),
                           "actions": res.get("actions"), "max_throttle": w.max_throttle()}
    if res.get("ok"):
        row["libvirt_seconds"] = seconds(completed(lab, dest, vm, "Time elapsed"))
        row["measured_downtime_ms"] = w.measured_downtime_ms(t0, t0 + wall)
    else:
        row["error"] = res.get("error")
    return row, w


def guest_alive(lab: Lab, vm: str) -> bool:
    tail = lab.console(vm)[-3000:]
    return "panic" not in tail and "BUG:" not in tail


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def record(lab: Lab) -> None:
    data = ROOT / "tests" / "unit" / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, vm, limit, extra in (("busy-plain", "busy-1", 45, ()),
                                   ("busy-auto-converge", "busy-1", 120, ("--auto-converge",)),
                                   ("quiet-plain", "quiet-1", 120, ())):
        row, w = virsh_migrate(lab, vm, limit, extra)
        print(name, row, flush=True)
        (data / f"jobstats-{name}.json").write_text(json.dumps(
            {"how": row["how"], "vm": vm, "finished": row["finished"],
             "note": "libvirt job statistics of the source, every 0.4 s; t: seconds from "
                     "the migration call (bench/policies.py record)",
             "stats": w.stats}, indent=0) + "\n")


def summary(rs: list[dict[str, Any]], how: str, one_pass: float | None = None
            ) -> dict[str, Any]:
    mine = [r for r in rs if r["how"] == how]
    done = [r for r in mine if r["finished"]]
    secs = median([r["seconds"] for r in done])
    return {
        "how": how, "finished": f"{len(done)}/{len(mine)}",
        "seconds": secs,
        "libvirt_seconds": median([r["libvirt_seconds"] for r in done
                                   if r.get("libvirt_seconds") is not None]),
        "x_one_pass": round(secs / one_pass, 2) if secs is not None and one_pass else None,
        "measured_downtime_ms": median([r["measured_downtime_ms"] for r in done
                                        if r.get("measured_downtime_ms") is not None]),
        "libvirt_downtime_ms": median([r["libvirt_downtime_ms"] for r in done
                                       if r.get("libvirt_downtime_ms") is not None]),
        "max_throttle": max((r["max_throttle"] for r in mine), default=0),
    }


def quiet_runs(lab: Lab, runs: int) -> dict[str, Any]:
    """quiet-1, virsh and ours alternating: the ratio of wall times (ours includes the
    command's start and checks) and of libvirt's own job times (the policy's cost alone)."""
    quiet: list[dict[str, Any]] = []
    for i in range(runs):
        for how in ("virsh", "ours"):
            row, _ = (virsh_migrate(lab, "quiet-1", 300) if how == "virsh"
                      else ours(lab, "quiet-1"))
            quiet.append({"run": i, "vm": "quiet-1", **row})
            print(quiet[-1], flush=True)
    sums = [summary(quiet, h) for h in dict.fromkeys(r["how"] for r in quiet)]
    ratio: dict[str, float | None] = {}
    for key in ("seconds", "libvirt_seconds"):
        a, b = sums[0][key], sums[-1][key]
        ratio[key] = round(b / a, 3) if a and b else None
    return {"quiet": sums, "quiet_ratio": ratio, "quiet_runs": quiet}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", choices=["run", "quiet", "record"], default="run")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench-policies.json"))
    args = ap.parse_args()
    lab = Lab()
    time.sleep(10)  # the guests' first dirty-rate reports
    if args.mode == "record":
        record(lab)
        return 0
    out = Path(args.out)
    if args.mode == "quiet":
        result = json.loads(out.read_text()) if out.exists() else {}
        result.update(quiet_runs(lab, args.runs * 2),
                      quiet_when=datetime.now(UTC).isoformat(timespec="seconds"))
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps({k: result[k] for k in ("quiet", "quiet_ratio")}, indent=1))
        return 0
    rates = dirty_rates(lab.console("busy-1"))[-3:]
    print(f"busy-1 reports dirtying {rates} MiB/s", flush=True)
    # One pass: how long the first memory pass of a plain virsh migration takes.
    first, w = virsh_migrate(lab, "busy-1", 60)
    one_pass = w.one_pass_s() or 30.0
    limit = 10 * one_pass
    print(f"one pass: {one_pass:.1f} s; limit {limit:.0f} s", flush=True)
    policies = ("minimal-downtime", "auto-converge", "post-copy")
    rows: list[dict[str, Any]] = []
    for i in range(args.runs):
        row, _ = virsh_migrate(lab, "busy-1", limit)
        rows.append({"run": i, "vm": "busy-1", **row})
        print(rows[-1], flush=True)
        for p in policies:
            row, _ = ours(lab, "busy-1", "--policy", p)
            row["guest_alive"] = guest_alive(lab, "busy-1")
            rows.append({"run": i, "vm": "busy-1", **row})
            print(rows[-1], flush=True)
    quiet = quiet_runs(lab, args.runs * 2)
    compression: list[dict[str, Any]] = []
    for i in range(args.runs):
        for opts in ((), ("--compress",)):
            src = lab.where("busy-1")
            before = lab.tx_bytes(src)
            row, _ = ours(lab, "busy-1", "--policy", "auto-converge", *opts)
            row["wire_mib"] = round((lab.tx_bytes(src) - before) / 1048576, 1)
            compression.append({"run": i, "vm": "busy-1", **row})
            print(compression[-1], flush=True)

    hows = list(dict.fromkeys(r["how"] for r in rows))
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": os.uname().nodename, "dirty_mib_s_reported": rates,
        "one_pass_s": one_pass, "limit_s": limit, "first_virsh": first,
        "busy": [summary(rows, h, one_pass) for h in hows],
        **quiet,
        "compression": [summary(compression, h, one_pass) | {
            "wire_mib": median([r["wire_mib"] for r in compression if r["how"] == h])}
            for h in dict.fromkeys(r["how"] for r in compression)],
        "runs": rows, "compression_runs": compression,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("busy", "quiet", "quiet_ratio", "compression")},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
