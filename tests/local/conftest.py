"""One format warm-up of the tiny VLM per test session, in a private cache, shared by every local-backend test."""

from __future__ import annotations

import json

import pytest

# The pixel limits of recipes/tiny.yaml: the warm-up key includes them, so the backend finds this same build.
TINY_PIXELS = {"min_pixels": 3136, "max_pixels": 12544}
TINY_SEED = 1


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory):
    # one cache per session, shared with tests/verl_cpu (same warm-up key: the build runs once)
    return tmp_path_factory.getbasetemp() / "warm_cache_shared"


@pytest.fixture(scope="session")
def warmed(tiny_vlm_path, warm_cache):
    """(model dir, warmup.json report) of the tiny VLM after the format warm-up (recipe seed 1, tiny.yaml pixels)."""
    from verl_ext.local.warmup import WarmupConfig, warmed_model_path

    cfg = WarmupConfig(seed=TINY_SEED, **TINY_PIXELS)
    path = warmed_model_path(tiny_vlm_path, cfg, cache_dir=warm_cache, log=lambda _m: None)
    return path, json.loads((path / "warmup.json").read_text())
