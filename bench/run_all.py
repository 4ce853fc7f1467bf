"""`make bench`: run every benchmark in full (or with --quick) and collect their JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py")


def run(path: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(path), *args], cwd=HERE.parent, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{path.name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    results = {p.stem: run(p, *sys.argv[1:]) for p in benchmarks()}
    print(json.dumps(results, indent=2))
