"""Every recipe key, set to a value other than its default, reaches the code that uses it.

The keys come from the schema (the dataclasses of `evolve/recipe.py`), not from a list here: a key added to the
schema without an entry in `KNOBS` fails `test_key_reaches_its_consumer[<key>]`. Each entry names a non-default value
(plus any key it needs to be valid) and a check that follows the value to its consumer: the verl stage commands
`evolve/commands.py` builds (Hydra overrides, inference flags, environment), the questioner reward as the trainer hook
reads it from the composed Hydra config, the reasoner reward function, the band filter and the per-iteration stats
(through the loop's own `execute_stage`), image preparation, the plan, the run directory and checkpoint pruning.
"""

from __future__ import annotations

import dataclasses
import io
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import verl_ext
from verl_ext.evolve import loop
from verl_ext.evolve.backend import StageContext
from verl_ext.evolve.batching import TrainSetTooSmallError, fit_batch
from verl_ext.evolve.commands import hydra_value
from verl_ext.evolve.filter_stage import question_diversity
from verl_ext.evolve.images import prepare_images
from verl_ext.evolve.recipe import Recipe, RecipeError, parse_recipe
from verl_ext.evolve.stages import build_plan
from verl_ext.evolve.verl_backend import VerlBackend
from verl_ext.visplay.records import PSEUDO_LABEL_COLUMNS, QUESTION_COLUMNS

CONFIG_DIR = Path(verl_ext.__file__).resolve().parent / "plugins" / "config"

# A valid verl recipe at the schema defaults (the paper's 8-GPU reference run) but for the required keys.
BASE = {"name": "knobs", "model": {"base": "org/base-vl"}, "images": {"source": "parquet", "path": "images.parquet"}}


def schema_keys(cls=Recipe, prefix: str = "") -> list[str]:
    """Every leaf key of the recipe schema, dotted, with YAML key names (`questioner.lambda`)."""
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        key = prefix + f.metadata.get("key", f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            keys += schema_keys(hints[f.name], key + ".")
        else:
            keys.append(key)
    return keys


def get(recipe_or_section, key: str):
    node = recipe_or_section
    for part in key.split("."):
        node = getattr(node, "lam" if part == "lambda" else part)
    return node


def make(overrides=(), base=None) -> Recipe:
    return parse_recipe(base or BASE, overrides=list(overrides))


# --------------------------------------------------------------------------------------------------
# Consumers
# --------------------------------------------------------------------------------------------------


class Run:
    """One recipe's stages as the verl backend and the loop see them, planned in a temporary run dir."""

    def __init__(self, recipe: Recipe, tmp_path: Path):
        self.recipe = recipe
        self.run_dir = tmp_path / "run"
        self.plan = build_plan(recipe, self.run_dir)
        self.backend = VerlBackend(python="python", echo=False)

    def spec(self, name: str, iteration: int = 1):
        return next(s for s in self.plan if s.name == name and s.iteration == iteration)

    def ctx(self, name: str, iteration: int = 1) -> StageContext:
        return StageContext(self.recipe, self.spec(name, iteration), self.run_dir, log=lambda _m: None)

    def command(self, name: str, iteration: int = 1):
        (cmd,) = self.backend.commands(self.ctx(name, iteration), planning=True)
        return cmd

    def hydra(self, name: str, iteration: int = 1) -> dict[str, str]:
        """A training stage's `key=value` Hydra overrides (the last one of a key wins, as in Hydra)."""
        argv = self.command(name, iteration).argv
        return dict(a.split("=", 1) for a in argv[argv.index("--config-name") + 2 :] if "=" in a)

    def flag(self, name: str, flag: str, iteration: int = 1) -> str | None:
        argv = self.command(name, iteration).argv
        return argv[argv.index(flag) + 1] if flag in argv else None


def hydra_is(stage: str, hydra_key: str, transform: Callable = lambda v: v):
    """The stage command sets `hydra_key` to the recipe value (through `transform`)."""

    def check(run: Run, value, _tmp):
        assert run.hydra(stage)[hydra_key] == hydra_value(transform(value)), hydra_key

    return check


def flag_is(stage: str, flag: str):
    def check(run: Run, value, _tmp):
        assert run.flag(stage, flag) == str(value), flag

    return check


def both(*checks):
    def check(run: Run, value, tmp):
        for c in checks:
            c(run, value, tmp)

    return check


def _compose(config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def questioner_settings(run: Run):
    """The trainer hook's reward settings, read from the questioner config composed with the stage's overrides."""
    from verl_ext.plugins.trainer import PenaltySettings

    visplay = [f"{k}={v}" for k, v in run.hydra("questioner").items() if k.startswith("visplay.reward.")]
    visplay += [f"{k}={v}" for k, v in run.hydra("questioner").items() if k == "visplay.reasoner.max_failed_fraction"]
    return PenaltySettings.from_config(_compose("questioner", visplay))


def rewards(settings, infos):
    from verl_ext.plugins.trainer import compute_questioner_rewards

    return compute_questioner_rewards(infos, settings)


def info(question: str, p: float = 0.5, valid: bool = True, failed: bool = False) -> dict:
    return {"vp_valid": float(valid), "vp_question": question, "vp_confidence": p, "vp_type": "numerical",
            "vp_reasoner_failed": float(failed), "vp_reasoner_error": "boom" if failed else ""}  # fmt: skip


# Three questions whose pairwise 1 - BLEU lies between 0.5 and 0.95: one cluster at threshold 0.95, three at 0.5.
NEAR = ["how many red circles are in the image", "how many red circles are in the picture",
        "how many red squares are in the image"]  # fmt: skip


def check_cluster_threshold(run: Run, value, tmp):
    hydra_is("questioner", "visplay.reward.bleu_threshold")(run, value, tmp)
    settings = questioner_settings(run)
    assert settings.threshold == value
    got = rewards(settings, [info(q) for q in NEAR]).penalties
    default = rewards(dataclasses.replace(settings, threshold=0.5), [info(q) for q in NEAR]).penalties
    assert got == [1.0, 1.0, 1.0] and default != got  # the recipe's threshold, not the hook's fallback, clustered
    # the filter stage's diversity statistic clusters with it too
    assert filter_stats(run, tmp)["diversity"]["num_clusters"] == 1


def check_lambda(run: Run, value, tmp):
    hydra_is("questioner", "visplay.reward.lam")(run, value, tmp)
    settings = questioner_settings(run)
    got = rewards(settings, [info(NEAR[0]), info(NEAR[0])]).rewards
    # reference mode: min(p, 1 - p) - lambda * |cluster| / B = 0.5 - lambda * 1
    assert got == pytest.approx([0.5 - value, 0.5 - value])
    # the filter stage's mean repetition penalty carries lambda too (five distinct questions: 1/5 each at lambda 1)
    at_one = question_diversity([r[0] for r in FILTER_ROWS], 1000, 0, 1.0, 0.5)["mean_penalty"]
    assert filter_stats(run, tmp)["diversity"]["mean_penalty"] == pytest.approx(value * at_one)


def check_reward_mode(run: Run, value, tmp):
    hydra_is("questioner", "visplay.reward.mode")(run, value, tmp)
    settings = questioner_settings(run)
    # paper: an invalid rollout scores 0; reference (the default): -1 - lambda * penalty
    infos = [info("q", valid=False), info("other text entirely")]
    assert rewards(settings, infos).rewards[0] == 0.0
    # "paper" is also the hook's fallback: the default recipe's "reference" must reach it as well
    default = questioner_settings(Run(make(), tmp / "default"))
    assert default.mode == "reference" and rewards(default, infos).rewards[0] == pytest.approx(-1.5)


def check_max_failed_fraction(run: Run, value, tmp):
    from verl_ext.plugins.reasoner_client import ReasonerEndpointError

    hydra_is("questioner", "visplay.reasoner.max_failed_fraction")(run, value, tmp)
    settings = questioner_settings(run)
    assert settings.max_failed_fraction == value
    infos = [info("a", failed=True)] + [info(f"question {i}") for i in range(3)]  # 1 of 4 failed: 0.25
    rewards(settings, infos)  # 0.25 <= value: the step goes on
    with pytest.raises(ReasonerEndpointError):
        rewards(dataclasses.replace(settings, max_failed_fraction=0.01), infos)


def check_format_weight(run: Run, value, tmp):
    from verl_ext.plugins.reward_functions import reasoner_compute_score

    hydra_is("reasoner", "reward.custom_reward_function.reward_kwargs.format_weight")(run, value, tmp)
    key = "reward.custom_reward_function.reward_kwargs.format_weight"
    cfg = _compose("reasoner", [f"{key}={run.hydra('reasoner')[key]}"])
    kwargs = dict(cfg.reward.custom_reward_function.reward_kwargs)
    score = reasoner_compute_score(solution_str="so \\boxed{4}", ground_truth="3", **kwargs)
    assert score["score"] == pytest.approx(value)  # wrong answer, right format: the format weight alone


# Pseudo-labelled questions of iteration 1 for the filter stage: (question, label, confidence).
FILTER_ROWS = [("q zero", "1", 0.4), ("q one", "2", 0.5), ("q two", "3", 0.7), ("q three", "4", 0.6),
               ("q four", "5", 0.35)]  # fmt: skip


def filter_stats(run: Run, tmp: Path) -> dict:
    """The loop's filter stage (`loop.execute_stage`) on a small pseudo-label file; returns its stats.json."""
    spec = run.spec("filter")
    n = len(FILTER_ROWS)
    labels = {c: [None] * n for c in PSEUDO_LABEL_COLUMNS}
    labels.update(id=[f"i{k}/1/0" for k in range(n)], source_image_id=[f"i{k}" for k in range(n)],
                  image=[b"x"] * n, question=[r[0] for r in FILTER_ROWS], question_type=["numerical"] * n,
                  pseudo_label=[r[1] for r in FILTER_ROWS], confidence=[r[2] for r in FILTER_ROWS],
                  num_samples=[10] * n, iteration=[1] * n)  # fmt: skip
    types = {"image": pa.binary(), "confidence": pa.float64(), "num_samples": pa.int64(), "iteration": pa.int64()}
    Path(spec.inputs["labels"]).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in labels.items()}),
                   spec.inputs["labels"])  # fmt: skip
    questions = {c: [None] * n for c in QUESTION_COLUMNS}
    questions.update(id=labels["id"], source_image_id=labels["source_image_id"], question=labels["question"])
    Path(spec.inputs["questions"]).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in questions.items()}), spec.inputs["questions"])
    loop.execute_stage(spec, run.ctx("filter"), backend=None)
    return json.loads((spec.work_dir / "stats.json").read_text())


def filter_reasons(run: Run, tmp: Path) -> list[str]:
    filter_stats(run, tmp)
    return pq.read_table(run.spec("filter").work_dir / "all.parquet").column("filter_reason").to_pylist()


def check_filter_low(run: Run, value, tmp):
    # p = 0.4 and 0.35 are inside the default band [0.3, 0.8], below a low edge of 0.45
    assert filter_reasons(run, tmp) == ["too_hard", "kept", "kept", "kept", "too_hard"]
    assert filter_stats(run, tmp)["band"]["low"] == value


def check_filter_high(run: Run, value, tmp):
    assert filter_reasons(run, tmp) == ["kept", "kept", "too_easy", "kept", "kept"]


def check_histogram_bins(run: Run, value, tmp):
    hist = filter_stats(run, tmp)["confidence"]
    assert len(hist["counts"]) == value and len(hist["edges"]) == value + 1
    assert hist["counts"] == [0, 2, 3, 0]  # 0.35, 0.4 in [0.25, 0.5); 0.5, 0.6, 0.7 in [0.5, 0.75)


def check_diversity_sample(run: Run, value, tmp):
    assert filter_stats(run, tmp)["diversity"]["sampled"] == value  # 5 questions, a seeded sample of `value`


def image_parquet(path: Path, n: int, column: str = "image") -> Path:
    import numpy as np
    from PIL import Image

    images = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.full((8, 8, 3), i * 20, dtype=np.uint8)).save(buf, format="PNG")
        images.append(buf.getvalue())
    pq.write_table(pa.table({"id": [f"img{i}" for i in range(n)], column: images}), path)
    return path


def prepared_ids(run: Run, tmp: Path) -> list[str]:
    out = tmp / "prepared.parquet"
    prepare_images(run.recipe.images, out, run.recipe.seed)
    return pq.read_table(out).column("id").to_pylist()


def check_images_source(run: Run, value, tmp):
    assert prepared_ids(run, tmp) == ["img0.png", "img1.png", "img2.png"]  # the folder's PNGs, not a parquet


def check_images_path(run: Run, value, tmp):
    assert prepared_ids(run, tmp) == [f"img{i}" for i in range(4)]
    assert run.spec("images", 0).inputs["source"] == value


def check_image_column(run: Run, value, tmp):
    assert prepared_ids(run, tmp) == ["img0", "img1"]  # read from the "pixels" column (there is no "image")


def check_max_images(run: Run, value, tmp):
    assert len(prepared_ids(run, tmp)) == value  # of 6 in the file


def check_split(run: Run, value, tmp, monkeypatch=None):
    import datasets

    seen = {}

    class FakeSplit:
        column_names = ["image"]

        def __len__(self):
            return 1

        def cast_column(self, *_a, **_k):
            return self

        def __getitem__(self, i):
            return {"image": {"bytes": image_bytes()}}

    def load_dataset(path, split):
        seen["split"] = split
        return FakeSplit()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    assert prepared_ids(run, tmp) == [f"{value}/0"] and seen["split"] == value


def image_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


def check_pixels(name: str, flag: str):
    stages = ("questioner", "reasoner")
    return both(
        *(hydra_is(s, f"data.{name}") for s in stages), flag_is("generate", flag), flag_is("pseudo_label", flag)
    )


def check_model_base(run: Run, value, tmp):
    assert run.hydra("questioner")["actor_rollout_ref.model.path"] == value  # Q_0
    assert run.flag("pseudo_label", "--model") == value  # S_0
    assert run.hydra("reasoner")["actor_rollout_ref.model.path"] == value


def check_trust_remote_code(run: Run, value, tmp):
    assert run.hydra("questioner")["actor_rollout_ref.model.trust_remote_code"] == "True"
    assert "--trust-remote-code" in run.command("questioner_merge").argv
    assert "--trust-remote-code" in run.command("generate").argv


def check_format_warmup(run: Run, value, tmp):
    warm = run.spec("warmup", 0)
    assert run.spec("questioner").inputs["init_model"] == str(warm.output_path("model"))


def check_warmup_setting(attr: str):
    def check(run: Run, value, tmp):
        from verl_ext.evolve.local_backend import LocalBackend

        assert getattr(LocalBackend().warmup_config(run.ctx("warmup", 0)), attr) == value

    return check


def check_backend(run: Run, value, tmp):
    assert loop.get_backend(run.recipe.backend).name == value  # what run_evolution and the dry run use


def check_iterations(run: Run, value, tmp):
    assert max(s.iteration for s in run.plan) == value


def check_seed(run: Run, value, tmp):
    assert run.hydra("questioner")["data.seed"] == str(value + 1)  # seed + iteration
    assert run.flag("generate", "--seed") == str(value)


def check_endpoint(run: Run, value, tmp):
    assert run.hydra("questioner")["visplay.reasoner.base_url"] == hydra_value(value)
    assert run.hydra("questioner")["reward.reward_model.enable"] == "False"


def check_reasoner_service(run: Run, value, tmp):
    hydra = run.hydra("questioner")
    assert hydra["reward.reward_model.enable"] == "True"
    assert hydra["reward.reward_model.enable_resource_pool"] == "False"  # colocated: no pool of its own
    assert hydra["reward.reward_model.rollout.free_cache_engine"] == "True"


def check_shrink_to_fit(role: str):
    def check(run: Run, value, tmp):
        grpo = get(run.recipe, f"{role}.grpo")
        with pytest.raises(TrainSetTooSmallError, match="shrink_to_fit is false"):
            fit_batch(role, 100, grpo, 4)
        assert fit_batch(role, 100, dataclasses.replace(grpo, shrink_to_fit=True), 4).shrunk

    return check


def check_gpus_per_node(run: Run, value, tmp):
    # validation is its consumer: 16 inference GPUs fit a 16-GPU node, not the default 8-GPU one
    make(["resources.gpus_per_node=16", "resources.inference_gpus=16"])
    with pytest.raises(RecipeError, match="resources.inference_gpus"):
        make(["resources.inference_gpus=16"])


def check_device_env(run: Run, value, tmp):
    assert run.command("questioner").env == {"VISPLAY_KNOB": "1"}
    assert run.command("generate").env == {"VISPLAY_KNOB": "1"}


def check_device_overrides(run: Run, value, tmp):
    assert run.command("questioner").argv[-1] == value[0]
    assert run.command("reasoner").argv[-1] == value[0]


def check_storage_root(run: Run, value, tmp):
    assert loop.default_run_dir(run.recipe) == Path(value) / "knobs"


def check_name(run: Run, value, tmp):
    assert loop.default_run_dir(run.recipe) == Path("runs") / value
    assert run.hydra("questioner")["trainer.experiment_name"] == f"{value}-iter1-questioner"


def check_keep_checkpoints(run: Run, value, tmp):
    from verl_ext.evolve.fake_backend import FakeBackend

    recipe = make(["storage.keep_checkpoints=false", "images.source=testkit", "images.max_images=2",
                   "iterations=1", "backend=local"])  # fmt: skip
    run_dir = tmp / "kept"
    loop.run_evolution(recipe, run_dir, FakeBackend(), stop_after="1:questioner_merge", log=lambda _m: None)
    checkpoint = next(s for s in build_plan(recipe, run_dir) if s.key == "1:questioner_merge").inputs["checkpoint"]
    assert not Path(checkpoint).exists()  # deleted after the merge


def check_prompt(role: str):
    def check(run: Run, value, tmp):
        assert run.hydra("questioner")[f"visplay.{role}_prompt"] == hydra_value(value)
        stage = "generate" if role == "questioner" else "pseudo_label"
        assert run.flag(stage, "--prompt-template") == value

    return check


# --------------------------------------------------------------------------------------------------
# The registry: key -> non-default value, what else it needs, how its consumer is checked
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Knob:
    value: object
    check: Callable
    also: tuple[str, ...] = ()  # other overrides the value needs to be valid
    setup: Callable | None = None  # writes the files the value names into tmp_path; returns more overrides
    needs_monkeypatch: bool = False


def _grpo(role: str) -> dict[str, Knob]:
    hydra = {
        "n": ("actor_rollout_ref.rollout.n", 4),
        "lr": ("actor_rollout_ref.actor.optim.lr", 3e-6),
        "weight_decay": ("actor_rollout_ref.actor.optim.weight_decay", 0.05),
        "kl_coef": ("actor_rollout_ref.actor.kl_loss_coef", 0.03),
        "kl_type": ("actor_rollout_ref.actor.kl_loss_type", "mse"),
        "rollout_batch_size": ("data.train_batch_size", 256),
        "global_batch_size": ("actor_rollout_ref.actor.ppo_mini_batch_size", 64),
        "max_token_len_per_gpu": ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu", 20000),
        "max_prompt_length": ("data.max_prompt_length", 7000),
        "max_response_length": ("data.max_response_length", 3000),
        "temperature": ("actor_rollout_ref.rollout.temperature", 0.7),
        "top_p": ("actor_rollout_ref.rollout.top_p", 0.9),
        "clip_ratio_high": ("actor_rollout_ref.actor.clip_ratio_high", 0.28),
    }
    knobs = {f"{role}.grpo.{k}": Knob(v, hydra_is(role, h)) for k, (h, v) in hydra.items()}
    if role == "reasoner":  # pseudo-labelling skips a question too long for the reasoner to train on
        skips = both(hydra_is("reasoner", "data.max_prompt_length"), flag_is("pseudo_label", "--max-prompt-tokens"))
        knobs["reasoner.grpo.max_prompt_length"] = Knob(7000, skips)
    knobs[f"{role}.grpo.shrink_to_fit"] = Knob(False, check_shrink_to_fit(role))
    return knobs


def _write_folder(tmp: Path) -> list[str]:
    folder = tmp / "folder"
    folder.mkdir()
    for i in range(3):
        (folder / f"img{i}.png").write_bytes(image_bytes())
    return [f"images.path={folder}"]


def _write_parquet(name: str, n: int, column: str = "image", point: bool = True):
    def setup(tmp: Path) -> list[str]:
        image_parquet(tmp / name, n, column)
        return [f"images.path={name}"] if point else []

    return setup


KNOBS: dict[str, Knob] = {
    "name": Knob("other-run", check_name),
    "model.base": Knob("org/other-vl", check_model_base),
    "model.trust_remote_code": Knob(True, check_trust_remote_code),
    "model.format_warmup": Knob(True, check_format_warmup),
    "model.warmup.examples": Knob(
        "some.module:examples", check_warmup_setting("examples"), ("model.format_warmup=true",)
    ),
    "model.warmup.num_images": Knob(12, check_warmup_setting("num_images"), ("model.format_warmup=true",)),
    "model.warmup.steps": Knob(7, check_warmup_setting("steps"), ("model.format_warmup=true",)),
    "model.warmup.lr": Knob(5e-4, check_warmup_setting("lr"), ("model.format_warmup=true",)),
    "images.source": Knob("folder", check_images_source, setup=_write_folder),
    "images.path": Knob("four.parquet", check_images_path, setup=_write_parquet("four.parquet", 4, point=False)),
    "images.image_column": Knob("pixels", check_image_column, setup=_write_parquet("px.parquet", 2, "pixels")),
    "images.split": Knob(
        "validation", check_split, ("images.source=hf", "images.path=org/dataset"), needs_monkeypatch=True
    ),  # fmt: skip
    "images.max_images": Knob(2, check_max_images, setup=_write_parquet("six.parquet", 6)),
    "images.min_pixels": Knob(65536, check_pixels("min_pixels", "--min-pixels")),
    "images.max_pixels": Knob(2_000_000, check_pixels("max_pixels", "--max-pixels")),
    "backend": Knob("local", check_backend),
    "iterations": Knob(2, check_iterations),
    "seed": Knob(7, check_seed),
    "questioner.steps": Knob(5, hydra_is("questioner", "trainer.total_training_steps")),
    "questioner.m": Knob(6, hydra_is("questioner", "visplay.reasoner.num_samples")),
    "questioner.reasoner_temperature": Knob(0.6, hydra_is("questioner", "visplay.reasoner.temperature")),
    "questioner.reasoner_top_p": Knob(0.8, hydra_is("questioner", "visplay.reasoner.top_p")),
    "questioner.reasoner_top_k": Knob(-1, hydra_is("questioner", "visplay.reasoner.top_k")),
    "questioner.reasoner_max_tokens": Knob(512, hydra_is("questioner", "visplay.reasoner.max_tokens")),
    "questioner.reasoner_prompt": Knob("answer_only", hydra_is("questioner", "visplay.reasoner.prompt_style")),
    "questioner.reward_mode": Knob("paper", check_reward_mode),
    "questioner.lambda": Knob(0.25, check_lambda),
    "questioner.cluster_threshold": Knob(0.95, check_cluster_threshold),
    "questioner.reasoner_service": Knob("colocated", check_reasoner_service),
    "questioner.reasoner_endpoint": Knob(
        "http://127.0.0.1:8000/v1", check_endpoint, ("questioner.reasoner_service=endpoint",)
    ),  # fmt: skip
    "questioner.checkpoint_every": Knob(5, hydra_is("questioner", "trainer.save_freq")),
    "questioner.reasoner_max_failed_fraction": Knob(0.3, check_max_failed_fraction),
    **_grpo("questioner"),
    "generation.num_questions": Knob(40, flag_is("generate", "--num-questions")),
    "generation.temperature": Knob(0.7, flag_is("generate", "--temperature")),
    "generation.top_p": Knob(0.5, flag_is("generate", "--top-p")),
    "generation.max_new_tokens": Knob(300, flag_is("generate", "--max-new-tokens")),
    "generation.shards": Knob(3, flag_is("generate", "--shards")),
    "generation.images_per_iteration": Knob(5, flag_is("generate", "--images-per-iteration")),
    "pseudo_label.m": Knob(5, flag_is("pseudo_label", "--m")),
    "pseudo_label.temperature": Knob(0.6, flag_is("pseudo_label", "--temperature")),
    "pseudo_label.top_p": Knob(0.7, flag_is("pseudo_label", "--top-p")),
    "pseudo_label.top_k": Knob(-1, flag_is("pseudo_label", "--top-k")),
    "pseudo_label.max_new_tokens": Knob(333, flag_is("pseudo_label", "--max-new-tokens")),
    "pseudo_label.shards": Knob(2, flag_is("pseudo_label", "--shards")),
    "filter.low": Knob(0.45, check_filter_low),
    "filter.high": Knob(0.65, check_filter_high),
    "reasoner.steps": Knob(9, hydra_is("reasoner", "trainer.total_training_steps")),
    "reasoner.format_weight": Knob(0.3, check_format_weight),
    "reasoner.checkpoint_every": Knob(3, hydra_is("reasoner", "trainer.save_freq")),
    **_grpo("reasoner"),
    "prompts.questioner": Knob("my/questioner.jinja", check_prompt("questioner")),
    "prompts.reasoner": Knob("my/reasoner.jinja", check_prompt("reasoner")),
    "stats.diversity_sample": Knob(3, check_diversity_sample),
    "stats.histogram_bins": Knob(4, check_histogram_bins),
    "resources.nnodes": Knob(
        2, both(hydra_is("questioner", "trainer.nnodes"), hydra_is("questioner", "reward.reward_model.nnodes"))
    ),  # fmt: skip
    "resources.gpus_per_node": Knob(16, check_gpus_per_node),
    "resources.questioner_train_gpus": Knob(2, hydra_is("questioner", "trainer.n_gpus_per_node")),
    "resources.questioner_reasoner_gpus": Knob(2, hydra_is("questioner", "reward.reward_model.n_gpus_per_node")),
    "resources.reasoner_train_gpus": Knob(4, hydra_is("reasoner", "trainer.n_gpus_per_node")),
    "resources.inference_gpus": Knob(4, flag_is("generate", "--engine-actors")),  # 1 node x 4 GPUs / tp 1
    "resources.inference_runner": Knob(
        "inprocess", both(flag_is("generate", "--runner"), flag_is("pseudo_label", "--runner"))
    ),  # fmt: skip
    "resources.rollout_tensor_parallel_size": Knob(
        4, hydra_is("reasoner", "actor_rollout_ref.rollout.tensor_model_parallel_size")
    ),
    "resources.inference_tensor_parallel_size": Knob(
        2,
        both(
            flag_is("generate", "--tensor-parallel-size"),
            hydra_is("questioner", "reward.reward_model.rollout.tensor_model_parallel_size"),
        ),
    ),  # fmt: skip
    "resources.gpu_memory_utilization": Knob(
        0.45,
        both(
            hydra_is("questioner", "actor_rollout_ref.rollout.gpu_memory_utilization"),
            flag_is("pseudo_label", "--gpu-memory-utilization"),
        ),
    ),  # fmt: skip
    "device.env": Knob(["VISPLAY_KNOB=1"], check_device_env),
    "device.overrides": Knob(["+trainer.knob=1"], check_device_overrides),
    "device.inference_engine": Knob("hf", both(flag_is("generate", "--engine"), flag_is("pseudo_label", "--engine"))),
    "storage.root": Knob("elsewhere/runs", check_storage_root),
    "storage.keep_checkpoints": Knob(False, check_keep_checkpoints),
    "logging.loggers": Knob(["console", "tensorboard"], hydra_is("questioner", "trainer.logger")),
    "logging.project": Knob("knob-project", hydra_is("reasoner", "trainer.project_name")),
}


def test_the_registry_names_exactly_the_schema_keys():
    keys = schema_keys()
    assert len(keys) == len(set(keys))
    assert sorted(set(KNOBS) - set(keys)) == [], "KNOBS entries for keys the schema no longer has"


@pytest.mark.parametrize("key", schema_keys())
def test_key_reaches_its_consumer(key, tmp_path, monkeypatch):
    assert key in KNOBS, f"recipe key {key} has no consumer check: add a Knob for it to KNOBS in {__file__}"
    knob = KNOBS[key]
    value = knob.value
    monkeypatch.chdir(tmp_path)  # relative paths (images.path, prompts) resolve inside tmp_path
    overrides = list(knob.also) + (knob.setup(tmp_path) if knob.setup is not None else [])
    overrides.append(f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    recipe = make(overrides)
    default = make()
    assert get(recipe, key) == value
    assert get(default, key) != value, f"{key}: pick a value that differs from the default"
    run = Run(recipe, tmp_path)
    if knob.needs_monkeypatch:
        knob.check(run, value, tmp_path, monkeypatch=monkeypatch)
    else:
        knob.check(run, value, tmp_path)
