"""Every test of the pure core starts from a fresh process-wide grader: no verdicts, timeout strikes or counters left
by the tests before it (the worker process is kept, so this costs nothing). `tools/twice.py` runs the suite twice in
one process to show it."""

import pytest

from verl_ext.visplay.grading import reset_grader


@pytest.fixture(autouse=True)
def fresh_process_wide_grader():
    reset_grader()
    yield
