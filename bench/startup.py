"""Start-up: from `xencenter-lite` to a visible main window on the lab, measured from
outside the program (Xvfb + xdotool looking for the window), repeated.

Run as root from the repository, with the demo lab up (`xencenter-lite lab up`):

    .venv/bin/python bench/startup.py --runs 7

or on a lab of its own (the tests' lab at slot XCL_TEST_LAB_SLOT, default 5, brought up
first and taken down at the end):

    XCL_TEST_LAB_SLOT=5 .venv/bin/python bench/startup.py --runs 15 --lab

`--src label=DIR` (repeatable) launches other checkouts of the package (DIR first on
PYTHONPATH), alternating run by run, so a before/after comparison shares the machine's
noise. Goal: a visible window within 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TITLE = "XenCenter Lite"


def one_run(display: str, inventory: str, src: str | None = None,
            pycache: str | None = None, timeout: float = 20.0) -> float:
    env = dict(os.environ, DISPLAY=display)
    env.pop("QT_QPA_PLATFORM", None)
    if src:
        env["PYTHONPATH"] = src
    if pycache:  # compiled modules cached, as an installed package has them
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    exe = str(Path(sys.executable).parent / "xencenter-lite")
    t0 = time.monotonic()
    proc = subprocess.Popen([exe, "--inventory", inventory], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - t0 < timeout:
            found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", TITLE],
                                   env=env, capture_output=True, text=True)
            if found.stdout.strip():
                return time.monotonic() - t0
            if proc.poll() is not None:
                raise RuntimeError(f"xencenter-lite exited ({proc.returncode}) before its "
                                   "window showed")
            time.sleep(0.01)
        raise TimeoutError(f"no window titled {TITLE!r} after {timeout} s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def summary(samples: list[float]) -> dict[str, object]:
    return {"runs": len(samples), "median_s": round(statistics.median(samples), 3),
            "min_s": round(min(samples), 3), "max_s": round(max(samples), 3),
            "samples": [round(s, 3) for s in samples]}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--inventory", default="/var/lib/xencenter-lite/lab/inventory.toml")
    ap.add_argument("--lab", action="store_true",
                    help="bring up the tests' lab at slot XCL_TEST_LAB_SLOT (default 5) "
                         "and take it down at the end")
    ap.add_argument("--src", action="append", default=[],
                    help="label=DIR: a checkout of the package to launch (repeatable)")
    ap.add_argument("--bytecode", action="store_true",
                    help="let Python cache compiled modules (in a temporary directory, not "
                         "the repository) even when PYTHONDONTWRITEBYTECODE is set, as an "
                         "installed package has them; by default the environment decides")
    ap.add_argument("--display", default=":97")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench-startup.json"))
    args = ap.parse_args()
    srcs: list[tuple[str, str | None]] = [
        (s.split("=", 1)[0], s.split("=", 1)[1]) if "=" in s else (Path(s).name, s)
        for s in args.src] or [("current", None)]

    lab = None
    tmp = tempfile.TemporaryDirectory(prefix="xcl-startup-")
    inventory = args.inventory
    if args.lab:
        os.environ.setdefault("XCL_TEST_LAB_SLOT", "5")
        sys.path.insert(0, str(ROOT))
        from tests.labtools import lab_config_for_slot
        from xencenter_lite.lab import Lab, load_lab_config

        lab = Lab(load_lab_config(lab_config_for_slot(Path(tmp.name))))
        lab.down()
        inventory = str(lab.up())
    # -noreset: otherwise the X server resets each time its last client (the console)
    # leaves, and the next launch waits for it (or finds it gone): seconds of noise.
    xvfb = subprocess.Popen(["Xvfb", args.display, "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp", "-noreset"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    samples: dict[str, list[float]] = {label: [] for label, _ in srcs}
    caches = {label: (str(Path(tmp.name) / f"pycache-{label}") if args.bytecode else None)
              for label, _ in srcs}
    try:
        time.sleep(1.0)
        for label, src in srcs:  # warm the page cache (and bytecode) once each, not counted
            one_run(args.display, inventory, src, caches[label])
        for i in range(args.runs):
            for label, src in (srcs if i % 2 == 0 else list(reversed(srcs))):
                samples[label].append(one_run(args.display, inventory, src, caches[label]))
    finally:
        xvfb.terminate()
        if lab is not None:
            lab.down()
        tmp.cleanup()
    if len(srcs) == 1:
        result: dict[str, object] = summary(samples[srcs[0][0]])
    else:
        result = {label: summary(xs) for label, xs in samples.items()}
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "inventory": inventory,
              "bytecode_cached": bool(args.bytecode) or not os.environ.get(
                  "PYTHONDONTWRITEBYTECODE"), **result}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
