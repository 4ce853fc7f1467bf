"""Every benchmark still runs (with --quick) and prints one JSON object last."""

import json
import subprocess
import sys

import pytest

from bench.run_all import HERE, benchmarks


@pytest.mark.slow
@pytest.mark.parametrize("path", benchmarks(), ids=lambda p: p.stem)
def test_benchmark_runs_quick(path):
    proc = subprocess.run([sys.executable, str(path), "--quick"], cwd=HERE.parent, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict) and result
