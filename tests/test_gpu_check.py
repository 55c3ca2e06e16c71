"""``scripts/gpu_check.sh``'s CPU fallback (what it runs where no GPU is visible), narrowed to one device test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # scripts/gpu_check.sh in a subprocess: a nested pytest run and two armlens commands
def test_gpu_check_cpu_fallback_writes_a_report(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "ARMLENS_GPU_CHECK_FORCE_CPU": "1",
           "ARMLENS_GPU_CHECK_K": "forward_matches_cpu", "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    report = (tmp_path / "report.md").read_text()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "device: cpu (no GPU visible: CPU fallback" in report
    assert "- float32: 1 passed" in report and "bfloat16" not in report.split("## Memory plan")[0]
    assert "qwen2-7b in bfloat16" in report and "56.0 KiB" in report  # the memory plan, without weights
    assert "## Bench" in report and "skipped" in report and report.rstrip().endswith("exit status: 0")
