"""A re-run reads the gate's scan from gate.json but decides its choice again with the current rule."""

import json

from verl_ext.world.experiment import ExperimentConfig
from verl_ext.world.gate import run_gate


def test_cached_gate_choice_is_recomputed_from_its_scan(tmp_path):
    scan = [
        {"budget": 1, "gain": -0.019, "gain_ci": [-0.05, 0.02]},
        {"budget": 2, "gain": -0.009, "gain_ci": [-0.05, 0.03]},
        {"budget": 4, "gain": -0.019, "gain_ci": [-0.06, 0.03]},
    ]
    stale = {"budgets": [1, 2, 4], "threshold": 0.05, "scan": scan, "seed": 1, "split": "dev"}
    stale["choice"] = {"passed": False, "budget": 2, "gain": -0.009, "threshold": 0.05}  # an older rule's pick
    (tmp_path / "gate.json").write_text(json.dumps(stale))
    cfg = ExperimentConfig(gate_budgets=(1, 2, 4), gate_threshold=0.05)
    gate = run_gate(cfg, tmp_path, base_model="unused: the gate is cached", log=lambda msg: None)
    assert gate["choice"] == {"passed": False, "budget": 1, "gain": -0.019, "threshold": 0.05}
    assert gate["scan"] == scan
    passing = dict(stale, scan=[dict(scan[0]), dict(scan[1], gain=0.06), dict(scan[2])])
    (tmp_path / "gate.json").write_text(json.dumps(passing))
    assert run_gate(cfg, tmp_path, base_model="unused", log=lambda msg: None)["choice"]["budget"] == 2
