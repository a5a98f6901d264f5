"""Test support that drives real third-party code on CPU. Never imported by production code paths."""
