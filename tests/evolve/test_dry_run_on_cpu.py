"""`--dry-run` prints every stage's complete command for the real recipes, on CPU, touching nothing; the verl
overrides it prints compose cleanly with the stage configs (every key exists, values land where intended)."""

import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

from verl_ext.cli import evolve as main
from verl_ext.evolve import commands
from verl_ext.evolve.recipe import load_recipe
from verl_ext.evolve.stages import build_plan

ROOT = Path(__file__).resolve().parents[2]
REAL = {
    "qwen2.5-vl-3b": ("Qwen/Qwen2.5-VL-3B-Instruct", 40),
    "qwen2.5-vl-7b": ("Qwen/Qwen2.5-VL-7B-Instruct", 20),
    "mimo-vl-7b": ("XiaomiMiMo/MiMo-VL-7B-SFT", 20),
}


def _dry_run(capsys, monkeypatch, name, run_dir, *extra, images=True, rc=0):
    for var in ("BASE_MODEL", "IMAGE_SOURCE", "IMAGE_PATH", "NNODES", "VISPLAY_RUNS", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    if images:  # an image folder with one image, so the dry run's checks pass
        folder = Path(run_dir).parent / "images"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(folder / "a.png")
        monkeypatch.setenv("IMAGE_PATH", str(folder))
    args = ["--recipe", str(ROOT / "recipes" / f"{name}.yaml"), "--run-dir", str(run_dir), "--dry-run", *extra]
    assert main(args) == rc
    return capsys.readouterr().out


def _blocks(out: str) -> dict[str, str]:
    parts = re.split(r"^## \[([^\]]+)\].*$", out, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _argv(block: str) -> list[str]:
    text = "\n".join(line for line in block.splitlines() if not line.startswith("#"))
    return shlex.split(text.replace("\\\n", " "))


def _overrides(block: str) -> dict[str, str]:
    return dict(a.split("=", 1) for a in _argv(block) if "=" in a and not a.startswith("-"))


@pytest.mark.parametrize("name", sorted(REAL))
def test_dry_run_prints_complete_commands(name, tmp_path, capsys, monkeypatch):
    base, steps = REAL[name]
    run = tmp_path / "run"
    out = _dry_run(capsys, monkeypatch, name, run)
    assert not run.exists(), "a dry run must not touch the run dir"
    blocks = _blocks(out)
    stages = ("questioner", "questioner_merge", "generate", "pseudo_label", "filter", "reasoner", "reasoner_merge")
    assert list(blocks) == ["0:images"] + [f"{t}:{s}" for t in (1, 2, 3) for s in stages]
    run = run.resolve()

    q1 = _overrides(blocks["1:questioner"])
    assert _argv(blocks["1:questioner"])[1:5] == ["-m", "verl_ext.plugins.main_visplay", "--config-name", "questioner"]
    expected = {
        "actor_rollout_ref.model.path": base,  # iteration 1: both roles start from the base model
        "reward.reward_model.model_path": base,
        "reward.reward_model.enable": "True",
        "reward.reward_model.n_gpus_per_node": "4",
        "trainer.n_gpus_per_node": "4",
        "visplay.reasoner.num_samples": "10",  # m
        "visplay.reward.mode": "reference",
        "visplay.reward.lam": "1.0",  # lambda
        "actor_rollout_ref.rollout.n": "8",
        "actor_rollout_ref.actor.optim.lr": "1e-06",
        "actor_rollout_ref.actor.kl_loss_coef": "0.01",
        "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
        "data.train_batch_size": "512",
        "actor_rollout_ref.actor.ppo_mini_batch_size": "128",
        "data.max_response_length": "2048",
        "data.min_pixels": "262144",
        "data.max_pixels": "4194304",
        "trainer.total_training_steps": str(steps),
        "trainer.v1.trainer_mode": "visplay_sync",
        "trainer.default_local_dir": str(run / ".work/iter_1/questioner"),
        "data.train_files": str(run / "iter_0/images/images.parquet"),
    }
    assert {k: q1.get(k) for k in expected} == expected

    # Iteration t starts Q from Q_{t-1} and freezes S_{t-1}; S_t starts from S_{t-1}.
    q3 = _overrides(blocks["3:questioner"])
    assert q3["actor_rollout_ref.model.path"] == str(run / "iter_2/questioner_merge")
    assert q3["reward.reward_model.model_path"] == str(run / "iter_2/reasoner_merge")
    r1, r2 = _overrides(blocks["1:reasoner"]), _overrides(blocks["2:reasoner"])
    assert r1["actor_rollout_ref.model.path"] == base
    assert r2["actor_rollout_ref.model.path"] == str(run / "iter_1/reasoner_merge")
    assert r2["data.train_files"] == str(run / "iter_2/filter/train.parquet")
    assert (r2["data.max_response_length"], r2["trainer.total_training_steps"]) == ("4096", str(steps))
    assert r2["reward.custom_reward_function.reward_kwargs.format_weight"] == "0.1"

    merge = _argv(blocks["2:questioner_merge"])
    assert merge[1:8] == ["-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir",
                          str(run / f"iter_2/questioner/global_step_{steps}/actor")]  # fmt: skip
    assert merge[8:] == ["--target_dir", str(run / ".work/iter_2/questioner_merge")]

    gen = _argv(blocks["2:generate"])
    assert gen[1:4] == ["-m", "verl_ext.inference", "generate"]
    assert gen[gen.index("--model") + 1] == str(run / "iter_2/questioner_merge")
    assert gen[gen.index("--num-questions") + 1] == "8000"  # N
    assert gen[gen.index("--top-p") + 1] == "0.95"
    pl = _argv(blocks["2:pseudo_label"])
    assert pl[pl.index("--model") + 1] == str(run / "iter_1/reasoner_merge")  # pseudo-labels come from S_{t-1}
    assert pl[pl.index("--m") + 1] == "9"
    assert "band filter 0.3 <= p <= 0.8" in blocks["2:filter"]


def test_dry_run_recipe_overrides_and_endpoint(tmp_path, capsys, monkeypatch):
    out = _dry_run(
        capsys, monkeypatch, "qwen2.5-vl-7b", tmp_path / "r",
        "--set", "questioner.m=6", "--set", "questioner.reasoner_service=endpoint",
        "--set", "questioner.reasoner_endpoint=http://reasoner:8000/v1", "--set", "iterations=1",
    )  # fmt: skip
    blocks = _blocks(out)
    assert len(blocks) == 8
    q = _overrides(blocks["1:questioner"])
    assert q["visplay.reasoner.num_samples"] == "6"
    assert q["reward.reward_model.enable"] == "False"
    assert q["visplay.reasoner.base_url"] == "'http://reasoner:8000/v1'"  # Hydra-quoted (':' is not a bare char)


def test_bad_recipe_exits_with_the_key(tmp_path, capsys):
    rc = main(["--recipe", str(ROOT / "recipes/tiny.yaml"), "--dry-run", "--set", "questioner.m=1"])
    assert rc == 2
    assert "questioner.m: must be >= 2, got 1" in capsys.readouterr().err


@pytest.mark.slow  # ~20 s: composes verl's full ppo_trainer config twice and imports the verl entry point
def test_overrides_compose_with_the_stage_configs():
    """Every printed override is a key of verl_ext/plugins/config/{questioner,reasoner}.yaml (Hydra refuses unknown
    keys), lands with the intended value, and passes the entry point's own config checks."""
    hydra = pytest.importorskip("hydra")
    from hydra import compose, initialize_config_dir

    recipe = load_recipe(ROOT / "recipes/qwen2.5-vl-7b.yaml", env={})
    plan = {s.key: s for s in build_plan(recipe, "/runs/x")}
    keep = lambda p: p  # noqa: E731
    q_ov = commands.questioner_overrides(recipe, plan["2:questioner"], resolve=keep)
    r_ov = commands.reasoner_overrides(recipe, plan["2:reasoner"], resolve=keep)
    assert hydra
    with initialize_config_dir(config_dir=str(ROOT / "verl_ext/plugins/config"), version_base=None):
        cq = compose(config_name="questioner", overrides=[commands._ov(k, v) for k, v in q_ov])
        cr = compose(config_name="reasoner", overrides=[commands._ov(k, v) for k, v in r_ov])
    for cfg, overrides in ((cq, q_ov), (cr, r_ov)):
        for key, value in overrides:
            node = cfg
            for part in key.split("."):
                node = node[part]
            got = list(node) if key == "trainer.logger" else node
            assert got == value, key
    assert cq.reward.reward_model.rollout.response_length == recipe.questioner.reasoner_max_tokens
    from verl_ext.plugins.main_visplay import check_config

    check_config(cq)
    check_config(cr)


@pytest.mark.parametrize(
    "value",
    ["http://reasoner:8000/v1", "/my dir/x y", "it's", "1e-6x", "true", None, 1e-06, 512, True, "123", "a=b,c",
     ["console", "wandb"], "Qwen/Qwen2.5-VL-7B-Instruct", "/runs/qwen2.5-vl-7b/iter_1/questioner_merge"],
)  # fmt: skip
def test_hydra_values_round_trip(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([commands._ov("k", value)])[0].value()
    assert (list(parsed) if isinstance(value, list) else parsed) == value
    assert type(parsed if not isinstance(value, list) else list(parsed)) is type(value)


def _verdicts(out: str) -> dict[str, str]:
    """`name -> verdict` of the dry run's check lines (`#   [FAIL] images (folder): ...`)."""
    found = re.findall(r"^#   \[\s*(ok|warn|FAIL)\] ([^:]+):", out.split("\n## ")[0], flags=re.M)
    return {name: verdict for verdict, name in found}


def test_dry_run_reports_what_a_real_run_would_refuse(tmp_path, capsys, monkeypatch):
    out = _dry_run(capsys, monkeypatch, "qwen2.5-vl-7b", tmp_path / "r", images=False, rc=1)
    verdicts = _verdicts(out)
    assert verdicts["images (folder)"] == "FAIL" and "IMAGE_PATH" in out
    assert verdicts["base model"] in ("ok", "warn")  # a hub id: cached, or downloaded when first needed
    assert "# verdict: a real run would stop: 1 check(s) failed" in out

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    monkeypatch.setenv("IMAGE_PATH", str(empty))
    assert main(["--recipe", str(ROOT / "recipes/qwen2.5-vl-7b.yaml"), "--run-dir", str(tmp_path / "r"), "--dry-run"])
    assert re.search(r"\[FAIL\] images \(folder\): .*has no images", capsys.readouterr().out)

    monkeypatch.setenv("BASE_MODEL", str(tmp_path / "no-model"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["--recipe", str(ROOT / "recipes/qwen2.5-vl-7b.yaml"), "--run-dir", str(tmp_path / "r"), "--dry-run"])
    assert _verdicts(capsys.readouterr().out)["base model"] == "FAIL"
    assert not (tmp_path / "r").exists()


def test_real_run_stops_before_its_first_stage_with_the_verdicts(tmp_path, capsys, monkeypatch):
    for var in ("IMAGE_SOURCE", "IMAGE_PATH", "BASE_MODEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("IMAGE_PATH", str(tmp_path / "missing"))
    rc = main(["--recipe", str(ROOT / "recipes/qwen2.5-vl-7b.yaml"), "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "the run cannot start" in err and "[FAIL] images (folder)" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_dry_run_reports_a_changed_recipe_against_the_manifest(tmp_path, capsys, monkeypatch):
    from verl_ext.evolve.fake_backend import FakeBackend
    from verl_ext.evolve.loop import run_evolution

    overrides = ["model.format_warmup=false", "images.max_images=4", "generation.num_questions=8", "iterations=1"]
    run = tmp_path / "run"
    run_evolution(load_recipe(ROOT / "recipes/tiny.yaml", overrides=overrides, env={}), run, FakeBackend(),
                  stop_after="1:generate", log=lambda _m: None)  # fmt: skip
    args = ["--recipe", str(ROOT / "recipes/tiny.yaml"), "--run-dir", str(run), "--dry-run"]
    assert main(args + [f"--set={o}" for o in overrides]) == 0
    out = capsys.readouterr().out
    assert _verdicts(out)["recipe vs run manifest"] == "ok" and "# verdict: ready to run" in out
    assert "already prepared" in out

    assert main(args + [f"--set={o}" for o in overrides] + ["--set", "questioner.m=3"]) == 1
    out = capsys.readouterr().out
    assert _verdicts(out)["recipe vs run manifest"] == "FAIL"
    assert "questioner.m: 4 -> 3" in out and "make evolve EVOLVE_ARGS='--force-from 1:questioner'" in out
    # --force-from: the stale stages are redone, so the real run would not stop on them.
    assert (
        main(args + [f"--set={o}" for o in overrides] + ["--set", "questioner.m=3", "--force-from", "1:questioner"])
        == 0
    )
