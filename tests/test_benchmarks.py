"""The training-step harness keeps the interface the speed issue fixed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_train_step_suite_runs_every_implementation(tmp_path: Path) -> None:
    out = tmp_path / "suite.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_step_suite.py"), "--rounds", "1", "--repeat",
         "1", "--backbone", "resnet10t", "--img-size", "32", "--batch", "2", "--classes", "5",
         "--scenes", "2", "--rows", "backbone", "reference", "ours-amp+recompute2",
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    table = done.stdout.splitlines()
    assert table[0].startswith("| row | s/step | x reference")
    assert any(line.startswith("| reference |") and "| 1.00 |" in line for line in table)
    results = json.loads(out.read_text())
    for name, impl in (("backbone", "backbone"), ("reference", "reference"),
                       ("ours-amp+recompute2", "ours-amp")):
        (row,) = results[name]
        assert row["impl"] == impl and row["step_s_median"] > 0 and row["peak_rss_mb"] > 0
    ours = results["ours-amp+recompute2"][0]
    assert ours["step_in_backward"] and ours["channels_last"] and ours["recompute_stages"] == 2
