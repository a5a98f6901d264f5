"""The exact commands the verl backend runs for each stage, built from the recipe as data.

Training stages are `python -m verl_ext.plugins.main_visplay --config-name questioner|reasoner` plus Hydra overrides
(one `key=value` per recipe setting, listed in the tables below); merges are verl's own model merger; generation and
pseudo-labelling are `python -m verl_ext.inference`. Nothing here runs anything or imports verl.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .backend import Command, resolve_model
from .recipe import GRPOConfig, Recipe
from .stages import StageSpec

TRAIN_MODULE = "verl_ext.plugins.main_visplay"
MERGE_MODULE = "verl.model_merger"
INFER_MODULE = "verl_ext.inference"
VAL_ROWS = 16
KEEP_CHECKPOINTS = 2  # verl checkpoints a training stage keeps on disk (trainer.max_actor_ckpt_to_keep)
TRAINER_MODE = "visplay_sync"  # registered by verl_ext.plugins.trainer (see verl_ext/plugins/config/*.yaml)

_SAFE = re.compile(r"[A-Za-z0-9_./~+\-]+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def hydra_value(value) -> str:
    """A Python value in Hydra's override grammar (strings quoted only when they would not parse as themselves)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    if _SAFE.fullmatch(text) and not _NUMBER.fullmatch(text) and text.lower() not in ("true", "false", "null", "none"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ov(key: str, value) -> str:
    return f"{key}={hydra_value(value)}"


def grpo_overrides(g: GRPOConfig) -> list[tuple[str, object]]:
    """GRPO settings shared by both roles (verl 0.9.1 keys)."""
    return [
        ("algorithm.adv_estimator", "grpo"),
        ("algorithm.use_kl_in_reward", False),
        ("actor_rollout_ref.rollout.n", g.n),
        ("actor_rollout_ref.rollout.temperature", g.temperature),
        ("actor_rollout_ref.rollout.top_p", g.top_p),
        ("actor_rollout_ref.actor.optim.lr", g.lr),
        ("actor_rollout_ref.actor.optim.weight_decay", g.weight_decay),
        ("actor_rollout_ref.actor.use_kl_loss", g.kl_coef > 0),
        ("actor_rollout_ref.actor.kl_loss_coef", g.kl_coef),
        ("actor_rollout_ref.actor.kl_loss_type", g.kl_type),
        ("actor_rollout_ref.actor.clip_ratio_high", g.clip_ratio_high),
        ("data.train_batch_size", g.rollout_batch_size),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", g.global_batch_size),
        ("actor_rollout_ref.actor.use_dynamic_bsz", True),
        ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu", g.max_token_len_per_gpu),
        ("data.max_prompt_length", g.max_prompt_length),
        ("data.max_response_length", g.max_response_length),
    ]


def trainer_overrides(recipe: Recipe, spec: StageSpec, steps: int, save_every: int | None, gpus: int) -> list:
    return [
        ("trainer.use_v1", True),
        # verl_ext.plugins.trainer's sync GRPO trainer (applies the batch repetition penalty; logs reward sub-scores).
        ("trainer.v1.trainer_mode", TRAINER_MODE),
        ("trainer.nnodes", recipe.resources.nnodes),
        ("trainer.n_gpus_per_node", gpus),
        ("trainer.total_training_steps", steps),
        # Each epoch has >= 1 step, so `steps` epochs always reach `steps` steps (verl stops at whichever comes first).
        ("trainer.total_epochs", steps),
        ("trainer.save_freq", save_every or steps),
        # periodic checkpoints without filling the disk: the newest two (the merge reads the last step's)
        ("trainer.max_actor_ckpt_to_keep", KEEP_CHECKPOINTS),
        ("trainer.test_freq", -1),
        ("trainer.val_before_train", False),
        ("data.val_max_samples", VAL_ROWS),  # validation is off: verl still builds the val set, keep it small
        ("trainer.resume_mode", "auto"),  # a preempted stage resumes from its last verl checkpoint
        ("trainer.default_local_dir", str(spec.work_dir)),
        ("trainer.project_name", recipe.logging.project),
        ("trainer.experiment_name", f"{recipe.name}-iter{spec.iteration}-{spec.name}"),
        ("trainer.logger", list(recipe.logging.loggers)),
        ("data.seed", recipe.seed + spec.iteration),  # data shuffling order
    ]


def _model_overrides(recipe: Recipe, model: str, gpus: int) -> list:
    res = recipe.resources
    return [
        ("actor_rollout_ref.model.path", model),
        ("actor_rollout_ref.model.trust_remote_code", recipe.model.trust_remote_code),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size", min(res.rollout_tensor_parallel_size, gpus)),
        ("actor_rollout_ref.rollout.gpu_memory_utilization", res.gpu_memory_utilization),
        ("data.min_pixels", recipe.images.min_pixels),
        ("data.max_pixels", recipe.images.max_pixels),
    ]


def questioner_overrides(recipe: Recipe, spec: StageSpec, resolve=resolve_model) -> list[tuple[str, object]]:
    q, res = recipe.questioner, recipe.resources
    images = spec.inputs["images"]
    out = [
        ("data.train_files", images),
        ("data.val_files", images),
        *_model_overrides(recipe, resolve(spec.inputs["init_model"]), res.questioner_train_gpus),
        *grpo_overrides(q.grpo),
        *trainer_overrides(recipe, spec, q.steps, q.checkpoint_every, res.questioner_train_gpus),
        ("visplay.questioner_prompt", recipe.prompts.questioner),
        ("visplay.reasoner_prompt", recipe.prompts.reasoner),
        # The questioner reward (docs/method.md): uncertainty of the frozen reasoner minus a diversity penalty.
        ("visplay.reward.mode", q.reward_mode),
        ("visplay.reward.lam", q.lam),
        ("visplay.reward.bleu_threshold", q.cluster_threshold),
        ("visplay.reasoner.num_samples", q.m),
        ("visplay.reasoner.prompt_style", q.reasoner_prompt),
        ("visplay.reasoner.temperature", q.reasoner_temperature),
        ("visplay.reasoner.top_p", q.reasoner_top_p),
        ("visplay.reasoner.top_k", q.reasoner_top_k),
        ("visplay.reasoner.max_tokens", q.reasoner_max_tokens),
        ("visplay.reasoner.max_failed_fraction", q.reasoner_max_failed_fraction),
    ]
    if q.reasoner_service == "pool":
        # verl starts S_{t-1} in its own GPU pool and routes the reward manager's requests to it.
        out += [
            ("reward.reward_model.enable", True),
            ("reward.reward_model.enable_resource_pool", True),
            ("reward.reward_model.model_path", resolve(spec.inputs["reasoner_model"])),
            ("reward.reward_model.nnodes", res.nnodes),
            ("reward.reward_model.n_gpus_per_node", res.questioner_reasoner_gpus),
            ("reward.reward_model.rollout.tensor_model_parallel_size", res.inference_tensor_parallel_size),
            ("visplay.reasoner.base_url", None),
        ]
    elif q.reasoner_service == "colocated":
        # S_{t-1} shares the training GPUs: verl wakes its engine for the reward and frees it after (sleep/wake).
        out += [
            ("reward.reward_model.enable", True),
            ("reward.reward_model.enable_resource_pool", False),
            ("reward.reward_model.model_path", resolve(spec.inputs["reasoner_model"])),
            ("reward.reward_model.rollout.free_cache_engine", True),
            ("reward.reward_model.rollout.gpu_memory_utilization", res.gpu_memory_utilization),
            ("reward.reward_model.rollout.tensor_model_parallel_size", res.inference_tensor_parallel_size),
            ("visplay.reasoner.base_url", None),
        ]
    else:
        out += [
            ("reward.reward_model.enable", False),
            ("reward.reward_model.enable_resource_pool", False),  # no reward model: reserve no GPUs for one
            ("visplay.reasoner.base_url", q.reasoner_endpoint),
        ]
    return out


def reasoner_overrides(recipe: Recipe, spec: StageSpec, resolve=resolve_model) -> list[tuple[str, object]]:
    r, res = recipe.reasoner, recipe.resources
    train = spec.inputs["train"]
    return [
        ("data.train_files", train),
        ("data.val_files", train),
        *_model_overrides(recipe, resolve(spec.inputs["init_model"]), res.reasoner_train_gpus),
        *grpo_overrides(r.grpo),
        *trainer_overrides(recipe, spec, r.steps, r.checkpoint_every, res.reasoner_train_gpus),
        ("visplay.reasoner_prompt", recipe.prompts.reasoner),
        ("reward.custom_reward_function.reward_kwargs.format_weight", r.format_weight),
    ]


def with_batch_fit(overrides: list[tuple[str, object]], fit) -> list[tuple[str, object]]:
    """`overrides` with the batch sizes of `fit` (a `batching.BatchFit`) in place of the recipe's."""
    sizes = {
        "data.train_batch_size": fit.rollout_batch_size,
        "actor_rollout_ref.actor.ppo_mini_batch_size": fit.global_batch_size,
    }
    return [(k, sizes.get(k, v)) for k, v in overrides]


def device_env(device) -> dict[str, str]:
    """The recipe's `device.env` (KEY=VALUE strings) as a mapping; empty without a device block."""
    return dict(item.split("=", 1) for item in (device.env if device is not None else ()))


def train_command(
    config_name: str, overrides: list[tuple[str, object]], python: str = sys.executable, device=None
) -> Command:
    """The training stage's command; a recipe `device` block (CPU runs) appends its overrides and env verbatim,
    after the recipe's, so the GPU command is a prefix of the CPU one."""
    argv = [python, "-m", TRAIN_MODULE, "--config-name", config_name]
    argv += [_ov(k, v) for k, v in overrides]
    if device is not None:
        argv += list(device.overrides)
    return Command(argv=argv, description=f"verl {config_name} stage", env=device_env(device))


def latest_step(checkpoint_dir: Path) -> int | None:
    """The step verl recorded in `latest_checkpointed_iteration.txt`, if any."""
    marker = Path(checkpoint_dir) / "latest_checkpointed_iteration.txt"
    if not marker.is_file():
        return None
    return int(marker.read_text().strip())


def merge_command(checkpoint_dir: Path, step: int, target_dir: Path, recipe: Recipe, python: str = sys.executable):
    argv = [
        python, "-m", MERGE_MODULE, "merge",
        "--backend", "fsdp",
        "--local_dir", str(Path(checkpoint_dir) / f"global_step_{step}" / "actor"),
        "--target_dir", str(target_dir),
    ]  # fmt: skip
    if recipe.model.trust_remote_code:
        argv.append("--trust-remote-code")
    return Command(argv=argv, description="verl model merger (FSDP -> Hugging Face)")


def inference_data_parallel_size(recipe: Recipe) -> int:
    """Offline engines (generation, pseudo-labelling): resources.inference_gpus of the head node, tp GPUs each."""
    res = recipe.resources
    return max(1, res.inference_gpus // res.inference_tensor_parallel_size)


def _on_head_node(recipe: Recipe) -> str:
    n = recipe.resources.nnodes
    return f" on the head node ({recipe.resources.inference_gpus} of its GPUs; nnodes = {n})" if n > 1 else ""


def _infer_common(recipe: Recipe, spec: StageSpec, engine: str) -> list[str]:
    res = recipe.resources
    args = [
        "--out-dir", str(spec.work_dir),
        "--iteration", str(spec.iteration),
        "--seed", str(recipe.seed),
        "--min-pixels", str(recipe.images.min_pixels),
        "--max-pixels", str(recipe.images.max_pixels),
        "--engine", engine,
    ]  # fmt: skip
    if engine == "vllm":
        # One node: the engines see only the GPUs of the node the loop runs on (the head node of a multi-node job).
        # Generation across the cluster is not implemented; training stages use every node.
        args += [
            "--data-parallel-size", str(inference_data_parallel_size(recipe)),
            "--tensor-parallel-size", str(res.inference_tensor_parallel_size),
            "--gpu-memory-utilization", str(res.gpu_memory_utilization),
        ]  # fmt: skip
    if recipe.model.trust_remote_code:
        args.append("--trust-remote-code")
    return args


def _prompt_args(flag: str, template: str | None) -> list[str]:
    return [flag, template] if template else []


def generate_command(
    recipe: Recipe, spec: StageSpec, engine: str = "vllm", resolve=resolve_model, python=sys.executable
):
    g = recipe.generation
    model = resolve(spec.inputs["model"])
    argv = [
        python, "-m", INFER_MODULE, "generate",
        "--model", model,
        "--images", spec.inputs["images"],
        "--num-questions", str(g.num_questions),
        "--shards", str(g.shards),
        "--temperature", str(g.temperature),
        "--top-p", str(g.top_p),
        "--max-new-tokens", str(g.max_new_tokens),
        "--questioner-checkpoint", model,
        *(["--images-per-iteration", str(g.images_per_iteration)] if g.images_per_iteration else []),
        *_prompt_args("--prompt-template", recipe.prompts.questioner),
        *_infer_common(recipe, spec, engine),
    ]  # fmt: skip
    desc = f"generate {g.num_questions} questions with Q_{spec.iteration}{_on_head_node(recipe)}"
    return Command(argv=argv, description=desc)


def pseudo_label_command(
    recipe: Recipe, spec: StageSpec, engine: str = "vllm", resolve=resolve_model, python=sys.executable
):
    p = recipe.pseudo_label
    argv = [
        python, "-m", INFER_MODULE, "pseudo-label",
        "--model", resolve(spec.inputs["model"]),
        "--questions", spec.inputs["questions"],
        "--m", str(p.m),
        "--shards", str(p.shards),
        "--temperature", str(p.temperature),
        "--top-p", str(p.top_p),
        "--top-k", str(p.top_k),
        "--max-new-tokens", str(p.max_new_tokens),
        # the reasoner's training prompt limit: a question too long to train on is not worth m samples either
        "--max-prompt-tokens", str(recipe.reasoner.grpo.max_prompt_length),
        *_prompt_args("--prompt-template", recipe.prompts.reasoner),
        *_infer_common(recipe, spec, engine),
    ]  # fmt: skip
    desc = f"pseudo-label with S_{spec.iteration - 1}, m = {p.m}{_on_head_node(recipe)}"
    return Command(argv=argv, description=desc)
