"""GRPO with TRL's `GRPOTrainer` for one role: the recipe's grpo block as TRL settings, image-prompt datasets, a run.

verl's batch words map onto TRL's: a "step" is one rollout batch of `rollout_batch_size` prompts x n completions,
updated in `rollout_batch_size / global_batch_size` optimizer steps (TRL's steps_per_generation). The KL term is TRL's
k3 estimator, which is verl's low_var_kl without its clamp. The final model is exported as an HF dir in `final/`;
TRL checkpoints (`checkpoint-<k>/`, every `checkpoint_every` steps) let a killed stage resume.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verl_ext.atomic_io import atomic_write_text

from .models import atomic_dir, load_model, save_model_dir, suppressed_token_ids

if TYPE_CHECKING:  # the recipe's grpo block, by shape only: the TRL backend sits below the loop
    from verl_ext.evolve.recipe import GRPOConfig as RecipeGRPO

FINAL_DIR = "final"
METRICS_FILE = "metrics.jsonl"
REPORT_TO = {"wandb": "wandb", "tensorboard": "tensorboard"}  # console: our own callback


def optimizer_steps_per_step(grpo: RecipeGRPO) -> int:
    return max(1, grpo.rollout_batch_size // grpo.global_batch_size)


def trl_config(
    grpo: RecipeGRPO,
    *,
    steps: int,
    out_dir: str | Path,
    seed: int,
    checkpoint_every: int | None = None,
    loggers: Sequence[str] = ("console",),
    suppress_tokens: Sequence[int] = (),
    run_name: str | None = None,
):
    """TRL's GRPOConfig for `steps` rollout steps of the recipe's grpo block."""
    import torch
    from trl import GRPOConfig

    per_step = optimizer_steps_per_step(grpo)
    on_gpu = torch.cuda.is_available()
    return GRPOConfig(
        output_dir=str(out_dir),
        run_name=run_name,
        seed=seed,
        data_seed=seed,
        max_steps=steps * per_step,
        num_generations=grpo.n,
        per_device_train_batch_size=grpo.global_batch_size * grpo.n,  # completions per optimizer step
        steps_per_generation=per_step,
        gradient_accumulation_steps=1,
        learning_rate=grpo.lr,
        weight_decay=grpo.weight_decay,
        lr_scheduler_type="constant",  # verl's default
        warmup_steps=0,
        max_grad_norm=1.0,
        beta=grpo.kl_coef,
        max_completion_length=grpo.max_response_length,
        temperature=grpo.temperature,
        top_p=grpo.top_p,
        generation_kwargs={"suppress_tokens": list(suppress_tokens)} if suppress_tokens else None,
        use_cpu=not on_gpu,
        bf16=on_gpu,
        gradient_checkpointing=False,
        logging_steps=1,
        report_to=[REPORT_TO[name] for name in loggers if name in REPORT_TO] or "none",
        save_strategy="steps" if checkpoint_every else "no",
        save_steps=(checkpoint_every * per_step) if checkpoint_every else 500,
        save_total_limit=2,  # as the verl recipes: the newest two (one may be cut by a kill while saving)
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        log_completions=False,
    )


def make_dataset(rows: dict[str, list], minimum_rows: int):
    """An HF dataset with an `image` column of encoded bytes (decoded to PIL on access), repeated (whole copies, in
    order) up to `minimum_rows` so that a small filtered set still fills one rollout batch."""
    import datasets

    n = len(next(iter(rows.values())))
    if n == 0:
        raise ValueError("cannot train on an empty dataset")
    copies = max(1, -(-minimum_rows // n))
    rows = {k: list(v) * copies for k, v in rows.items()}
    rows["image"] = [{"bytes": b, "path": None} for b in rows["image"]]
    return datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())


def latest_checkpoint(out_dir: str | Path) -> str | None:
    """The newest complete TRL checkpoint: the Trainer writes `trainer_state.json` last, so a checkpoint whose state
    file is missing or cut (a kill while saving) is skipped for the one before it."""
    found = []
    for p in Path(out_dir).glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and _readable_state(p / "trainer_state.json"):
            found.append((int(m.group(1)), p))
    return str(max(found)[1]) if found else None


def _readable_state(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), dict)
    except (OSError, ValueError):
        return False


def trim_metrics(path: str | Path, through_step: int) -> None:
    """Keep the rows of a metrics file up to `through_step` (the checkpoint a resumed attempt starts from): the
    steps after it are trained again, so their rows from the killed attempt would otherwise appear twice."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            continue  # a line cut by the kill
        if isinstance(step, int) and step <= through_step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _log_callback(out_dir: Path, log: Callable[[str], None], role: str):
    from transformers import TrainerCallback

    shown = ("loss", "reward", "reward_std", "kl", "visplay/parse_rate", "visplay/confidence", "visplay/penalty",
             "visplay/accuracy", "visplay/format", "completions/mean_length")  # fmt: skip

    class LogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs:
                return
            with open(out_dir / METRICS_FILE, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}, default=float) + "\n")
            parts = [f"{k.split('/')[-1]} {logs[k]:.3g}" for k in shown if isinstance(logs.get(k), (int, float))]
            if not parts:  # the end-of-training summary (runtime, mean loss)
                return
            log(f"[{role}] step {state.global_step}/{state.max_steps}: " + ", ".join(parts))

    return LogCallback()


class _DropTokenAlignmentNotice(logging.Filter):
    """transformers' Trainer aligns the model's PAD/BOS/EOS with the tokenizer and warns each time a trainer is built
    (four times per tiny run); run_grpo restores the saved model's own generation config, so the notice is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "new PAD/BOS/EOS tokens" not in record.getMessage()


_TOKEN_NOTICE = _DropTokenAlignmentNotice()


@contextlib.contextmanager
def _no_progress_bars():
    """Without transformers' per-file progress bars (instant for the local backend's small models: noise)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _trainer_class():
    from trl import GRPOTrainer

    class LocalGRPOTrainer(GRPOTrainer):
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            # transformers 5.10's Trainer restores checkpoint weights with a raw load_state_dict, which misses the
            # key mapping of models whose saved keys differ from their module names (Qwen2.5-VL saves `visual.*`,
            # `model.layers.*`): every key is dropped with a warning and training goes on from the init weights.
            # from_pretrained applies the mapping; copy its weights in.
            model = model if model is not None else self.model
            loaded = type(model).from_pretrained(resume_from_checkpoint, dtype=model.dtype)
            model.load_state_dict(loaded.state_dict())

    return LocalGRPOTrainer


def run_grpo(
    *,
    role: str,
    model_path: str | Path,
    processor,
    dataset,
    reward_funcs: list,
    grpo: RecipeGRPO,
    steps: int,
    out_dir: str | Path,
    seed: int,
    checkpoint_every: int | None = None,
    loggers: Sequence[str] = ("console",),
    trust_remote_code: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train `model_path` with GRPO into `out_dir` (TRL checkpoints + `final/`); resume from its last checkpoint."""
    from transformers import PrinterCallback, ProgressCallback

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / FINAL_DIR
    if (final / "config.json").is_file():
        log(f"[{role}] already trained: {final}")
        return {"resumed": "finished"}
    for stale in out_dir.glob(f".{FINAL_DIR}.*"):  # an export killed half-way
        shutil.rmtree(stale, ignore_errors=True)
    started = time.monotonic()
    if grpo.kl_coef and grpo.kl_type != "low_var_kl":
        log(f"[{role}] kl_type {grpo.kl_type}: TRL only has the k3 (low_var_kl) estimator; using it")
    with _no_progress_bars():
        model = load_model(model_path, trust_remote_code=trust_remote_code, train=True)
    # The trainer aligns the generation config with the tokenizer (one eos); the saved model keeps its own.
    generation_config = copy.deepcopy(model.generation_config)
    args = trl_config(
        grpo,
        steps=steps,
        out_dir=out_dir,
        seed=seed,
        checkpoint_every=checkpoint_every,
        loggers=loggers,
        suppress_tokens=suppressed_token_ids(processor.tokenizer),
        run_name=f"{role}-{out_dir.parent.name}",
    )
    logging.getLogger("transformers.trainer_utils").addFilter(_TOKEN_NOTICE)  # a set: added once
    trainer = _trainer_class()(
        model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset, processing_class=processor
    )
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    trainer.add_callback(_log_callback(out_dir, log, role))
    resume = latest_checkpoint(out_dir)
    trim_metrics(out_dir / METRICS_FILE, int(Path(resume).name.split("-")[1]) if resume else 0)
    if resume:
        log(f"[{role}] resuming from {resume}")
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.model.generation_config = generation_config
    with atomic_dir(final) as tmp, _no_progress_bars():
        save_model_dir(trainer.model, processor, tmp)
    return {
        "steps": steps,
        "optimizer_steps": int(trainer.state.global_step),
        "resumed_from": Path(resume).name if resume else None,
        "train_loss": float(result.training_loss),
        "seconds": round(time.monotonic() - started, 1),
    }
