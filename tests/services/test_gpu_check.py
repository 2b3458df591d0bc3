"""bench/gpu_check.sh fails when a check fails (its --self-test runs fake steps; no GPU needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.sh"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_self_test_passes() -> None:
    result = run("--self-test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SELF-TEST OK" in result.stdout


def test_a_failing_step_fails_the_script_and_later_steps_still_run(tmp_path) -> None:
    result = run("--fake", "fail", str(tmp_path))
    assert result.returncode == 1
    assert "GPU CHECK FAILED: fake_fail" in result.stdout
    assert (tmp_path / "fake_after.txt").read_text().strip() == "runs after a failure too"
    assert run("--fake", "pass", str(tmp_path / "ok")).returncode == 0
