"""bench/scale.py at a tiny count, so it does not rot: every row is printed with its target,
and what must hold at any size holds (nothing renewed twice, the per-CA bound across nodes).
The timings themselves live in the bench, not here."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.lab
def test_the_scale_bench_runs_and_prints_every_row_with_its_target(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench.scale", "--count", "300", "--renewals", "8",
                          "--nodes", "2", "--kill-batch", "0", "--requests", "3",
                          "--backends", "postgresql", "--json", str(tmp_path / "rows.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert out.returncode in (0, 1), out.stderr[-3000:]  # 1: a timing target missed at this size
    lines = out.stdout.splitlines()
    for figure, target in (("certificate list, page 1", "p95 < 100 ms"), ("dashboard", "p95 < 100 ms"),
                           ("search 'shop12'", "p95 < 100 ms"), ("scheduler tick", "p95 < 50 ms"),
                           ("hourly notification scan", "< 2 s"), ("daily delegation watch", "< 10 min"),
                           ("memory per process", "< 200 MiB"), ("renewals across 2 nodes", ">= 1000 / min")):
        assert any(figure in line and target in line for line in lines), (figure, out.stdout)
    renewed = next(line for line in lines if "none renewed twice" in line)
    bound = next(line for line in lines if "per-CA bound across nodes" in line)
    assert renewed.rstrip().endswith("PASS") and bound.rstrip().endswith("PASS"), out.stdout
    assert (tmp_path / "rows.json").exists() and "RESULT:" in out.stdout
