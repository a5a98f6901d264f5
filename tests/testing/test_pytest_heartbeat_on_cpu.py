"""`make test` reports a long test every VISPLAY_TEST_HEARTBEAT seconds, past pytest's output capture."""

import os
import subprocess
import sys


def _run(tmp_path, *args, every="0.5"):
    (tmp_path / "test_slow_on_cpu.py").write_text(
        "import time\n\ndef test_slow():\n    time.sleep(1.8)\n\ndef test_fast():\n    pass\n"
    )
    env = {**os.environ, "VISPLAY_TEST_HEARTBEAT": every}
    cmd = [sys.executable, "-m", "pytest", "-p", "verl_ext.testing.pytest_heartbeat", "-p", "no:cacheprovider"]
    cmd += ["-c", os.devnull, "--rootdir", str(tmp_path), "-q", *args, str(tmp_path / "test_slow_on_cpu.py")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_long_test_reports_while_it_runs(tmp_path):
    out = _run(tmp_path)
    beats = [line for line in out.splitlines() if "still running" in line]
    assert len(beats) >= 2 and all("test_slow_on_cpu.py::test_slow" in line for line in beats)
    assert "test_fast" not in out


def test_also_without_capture_and_off_when_zero(tmp_path):
    assert "test_slow still running" in _run(tmp_path, "-s")
    assert "still running" not in _run(tmp_path, every="0")
