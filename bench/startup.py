"""Start-up: from `xencenter-lite` to a visible main window on the lab, measured from
outside the program (Xvfb + xdotool looking for the window), repeated.

Run as root from the repository, with the demo lab up (`xencenter-lite lab up`):

    .venv/bin/python bench/startup.py --runs 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TITLE = "XenCenter Lite"


def one_run(display: str, inventory: str, timeout: float = 20.0) -> float:
    env = dict(os.environ, DISPLAY=display)
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
            time.sleep(0.01)
        raise TimeoutError(f"no window titled {TITLE!r} after {timeout} s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--inventory", default="/var/lib/xencenter-lite/lab/inventory.toml")
    ap.add_argument("--display", default=":97")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench-startup.json"))
    args = ap.parse_args()
    xvfb = subprocess.Popen(["Xvfb", args.display, "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        one_run(args.display, args.inventory)  # warm the page cache once, not counted
        samples = [one_run(args.display, args.inventory) for _ in range(args.runs)]
    finally:
        xvfb.terminate()
    result = {"runs": args.runs, "median_s": round(statistics.median(samples), 3),
              "min_s": round(min(samples), 3), "max_s": round(max(samples), 3),
              "samples": [round(s, 3) for s in samples]}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
