"""A pytest plugin for long test suites on small machines: while one test runs longer than VISPLAY_TEST_HEARTBEAT
seconds (default 10; 0 turns it off), a line saying which test is still running and for how long is written every
that many seconds, straight to the terminal (past pytest's output capture). `make test` is never silent for minutes.

tests/conftest.py imports its hook; elsewhere: `pytest -p verl_ext.testing.pytest_heartbeat`.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest


def heartbeat_seconds() -> float:
    try:
        return float(os.environ.get("VISPLAY_TEST_HEARTBEAT", "10"))
    except ValueError:
        return 10.0


def _terminal_fd(config: pytest.Config) -> int:
    """The terminal's file descriptor as it was before pytest captured it (stdout itself under `-s`)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    out = getattr(getattr(capman, "_global_capturing", None), "out", None)
    fd = getattr(out, "targetfd_save", None)
    return fd if isinstance(fd, int) else sys.__stdout__.fileno()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    every = heartbeat_seconds()
    if every <= 0:
        yield
        return
    fd = _terminal_fd(item.config)
    stop = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not stop.wait(every):
            line = f"\n    ... {item.nodeid} still running ({time.monotonic() - start:.0f} s)\n"
            try:
                os.write(fd, line.encode())
            except OSError:
                return

    thread = threading.Thread(target=beat, name="visplay-test-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
