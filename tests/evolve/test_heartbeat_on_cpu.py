"""A long stage is never silent: while it logs nothing for VISPLAY_HEARTBEAT seconds, the loop says it is running."""

import time

from verl_ext.evolve.loop import _heartbeat


def test_a_silent_stage_reports_that_it_is_still_running(monkeypatch):
    monkeypatch.setenv("VISPLAY_HEARTBEAT", "0.5")
    lines = []
    with _heartbeat("1:questioner", lines.append):
        time.sleep(1.8)
    beats = [line for line in lines if "still running" in line]
    assert len(beats) >= 2 and all(b.startswith("[evolve] 1:questioner: still running (") for b in beats)

    monkeypatch.setenv("VISPLAY_HEARTBEAT", "2")
    lines.clear()
    with _heartbeat("1:reasoner", lines.append) as log:
        for i in range(6):  # a stage that logs on its own more often than the heartbeat: no extra lines
            log(f"step {i}")
            time.sleep(0.1)
    assert lines == [f"step {i}" for i in range(6)]


def test_heartbeat_off(monkeypatch):
    monkeypatch.setenv("VISPLAY_HEARTBEAT", "0")
    lines = []
    with _heartbeat("1:generate", lines.append):
        time.sleep(0.3)
    assert lines == []
