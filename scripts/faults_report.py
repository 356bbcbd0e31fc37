"""Run the fault sweep (tests/faults, on its own lab) and write docs/faults.md from it.

    .venv/bin/python scripts/faults_report.py            # as root, after ./setup.sh test

The sweep is also part of the normal test suite; this only keeps its figures.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def render(reports: dict[str, Any], seconds: float) -> str:
    lines = ["# The fault sweep", "",
             "Every call a job makes, made to go wrong in turn, by a wrapper around the real",
             "link (`tests/faults/faultlink.py`): **fail** (the server refuses it), **hang** (it",
             "outlives the engine's deadline, then goes through), **drop** (it is done, but the",
             "answer is lost with the connection). After each run the faulty engine is closed,",
             "a fresh engine (the next command) starts and finishes what was left for it, and",
             "libvirt itself is asked: the VM is defined on exactly one server and runs (a",
             "halted one stays halted); its disks exist and hold the data written before the",
             "job; nothing the job created",
             "stays unless the VM runs on it; nothing is left pending; the job ended with a",
             "message. An exception that is not a libvirt error (a bug) is injected too, at",
             "four places of a storage migration (`test_a_bug_mid_migration_is_settled_like_",
             "any_failure`), with the same checks.", "",
             f"Run on {time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs, "
             f"in {seconds:.0f} s: `.venv/bin/python scripts/faults_report.py`.", ""]
    lab = reports.get("lab")
    if lab:
        rows = lab["outcomes"]
        fired = [r for r in rows if r["fired"]]
        lines += ["## On the lab (real libvirtd servers, QEMU guests made by virt-install)", "",
                  f"{len(rows)} runs, **{len(fired)} faults injected**, "
                  f"**{len(lab['summary']['with_problems'])} with a problem**.", ""]
        by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in fired:
            by[(r["job"], r["fault"])].append(r)
        table = []
        for (job, fault), group in sorted(by.items()):
            ends = Counter(r["state"] for r in group)
            where = Counter(r["where"] for r in group)
            table.append([job, fault, len(group),
                          ", ".join(f"{n} {s}" for s, n in sorted(ends.items())),
                          ", ".join(f"{n} {w}" for w, n in sorted(where.items())),
                          sum(1 for r in group if r["pending_after_job"]),
                          sum(1 for r in group if r["problems"])])
        lines += _table(["job", "fault", "faults", "the job ended", "the VM ended on",
                         "left for the next engine", "problems"], table)
        lines += ["", "Calls swept (each with each fault):", ""]
        calls: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            if r["call"] not in calls[r["job"]]:
                calls[r["job"]].append(r["call"])
        lines += [f"- {job}: " + ", ".join(f"`{c}`" for c in cs) for job, cs in calls.items()]
        lines.append("")
    for name, title in (("testdriver-probe", "The shared-SR probe"),
                        ("testdriver-disk-move", "A disk move and its roll-back")):
        rep = reports.get(name)
        if not rep:
            continue
        rows = rep["outcomes"]
        lines += [f"## {title}, on libvirt's test driver (no lab)", "",
                  f"{len(rows)} runs, **{sum(r['fired'] for r in rows)} faults injected**, all "
                  "checks passed.", "",
                  "Calls swept: " + ", ".join(f"`{c}`" for c in dict.fromkeys(
                      r["call"] for r in rows)), ""]
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, XCL_FAULT_REPORT_DIR=folder)
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/faults"], cwd=ROOT,
                              env=env)
        seconds = time.monotonic() - began
        reports = {p.stem: json.loads(p.read_text()) for p in Path(folder).glob("*.json")}
    if done.returncode != 0:
        print("the sweep failed; docs/faults.md left as it was", file=sys.stderr)
        return done.returncode
    (ROOT / "docs" / "faults.md").write_text(render(reports, seconds) + "\n")
    print("wrote docs/faults.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
