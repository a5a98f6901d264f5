"""tests/special_e2e/run_all.sh (the one-GPU acceptance run) in DRY_RUN mode: the script is valid bash, the one-GPU
recipe it builds passes validation, the loop plans every stage with it, its verl overrides compose with the stage
configs, and it prints the pass/fail table."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "special_e2e" / "run_all.sh"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        "DRY_RUN": "1",
        "PYTHON": sys.executable,
        "PYTHONPATH": str(ROOT),
        "RUN_DIR": str(tmp / "run"),
    }
    env.pop("MODEL_PATH", None)
    # The hub id stands for the model a maintainer has; offline (as the suite runs) the dry run's model check would
    # rightly fail on it, online it says the model is fetched when first needed.
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    out = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return out


def test_dry_run_passes_and_prints_the_table(dry_run):
    assert dry_run.returncode == 0, dry_run.stderr[-3000:]
    lines = dry_run.stdout.splitlines()
    assert "| check | result | seconds |" in lines
    assert any(re.fullmatch(r"\| dry-run \| PASS \| \d+ \|", line) for line in lines)
    assert any(line.startswith("| preflight |") for line in lines)
    assert lines[-1] == "all checks passed"


def _blocks(out: str) -> dict[str, str]:
    parts = re.split(r"^## \[([^\]]+)\].*$", out, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _argv(block: str) -> list[str]:
    text = "\n".join(line for line in block.splitlines() if not line.startswith("#") and not line.startswith("|"))
    return shlex.split(text.split("\n\n")[0].replace("\\\n", " "))


def test_one_gpu_chain_is_planned_small(dry_run):
    blocks = _blocks(dry_run.stdout)
    assert [k for k in blocks if k.startswith("1:")] == [
        "1:questioner", "1:questioner_merge", "1:generate", "1:pseudo_label", "1:filter", "1:reasoner",
        "1:reasoner_merge",
    ]  # fmt: skip
    assert "2:questioner" not in blocks
    q = dict(a.split("=", 1) for a in _argv(blocks["1:questioner"]) if "=" in a)
    assert q["trainer.total_training_steps"] == "2" and q["trainer.n_gpus_per_node"] == "1"
    assert q["reward.reward_model.enable"] == "True" and q["reward.reward_model.enable_resource_pool"] == "False"
    gen = _argv(blocks["1:generate"])
    assert gen[gen.index("--engine-actors") + 1] == "1" and gen[gen.index("--num-questions") + 1] == "32"


@pytest.mark.slow  # composes verl's config
def test_its_overrides_compose_with_the_questioner_config(dry_run):
    from hydra import compose, initialize_config_dir

    argv = _argv(_blocks(dry_run.stdout)["1:questioner"])
    overrides = argv[argv.index("--config-name") + 2 :]
    with initialize_config_dir(config_dir=str(ROOT / "verl_ext/plugins/config"), version_base=None):
        cfg = compose(config_name="questioner", overrides=overrides)
    assert cfg.reward.reward_model.rollout.free_cache_engine is True
    assert cfg.trainer.total_training_steps == 2
