"""Fit a GRPO stage's batch sizes to the rows its training file really has.

verl (0.9.1) computes `steps_per_epoch = len(dataset) // data.train_batch_size` and its dataloader drops the last
partial batch: with fewer rows than the rollout batch it divides by zero (or trains on nothing). A band filter that
keeps few questions, or a small image set, is an ordinary outcome of a run, so by default the stage shrinks its batch
to fit, with a warning that names the counts and the keys to change; `grpo.shrink_to_fit: false` stops instead.
Pure arithmetic: no torch, no verl.
"""

from __future__ import annotations

from dataclasses import dataclass

from .recipe import GRPOConfig


class TrainSetTooSmallError(ValueError):
    """The training file cannot fill even one GRPO step (or the recipe asked to stop rather than shrink)."""


@dataclass(frozen=True)
class BatchFit:
    rollout_batch_size: int  # verl data.train_batch_size
    global_batch_size: int  # verl actor.ppo_mini_batch_size
    rows: int
    shrunk: bool
    message: str | None = None  # the warning when shrunk

    def as_summary(self) -> dict:
        return {
            "rows": self.rows,
            "rollout_batch_size": self.rollout_batch_size,
            "global_batch_size": self.global_batch_size,
            "shrunk": self.shrunk,
        }


def _hint(role: str) -> str:
    more = (
        "widen filter.low/filter.high or raise generation.num_questions"
        if role == "reasoner"
        else "add images (images.path / images.max_images)"
    )
    return f"{more}, or lower {role}.grpo.rollout_batch_size and {role}.grpo.global_batch_size in the recipe"


def fit_batch(role: str, rows: int, grpo: GRPOConfig, data_parallel_size: int, source: str = "") -> BatchFit:
    """The batch sizes a `role` stage runs with on `rows` training rows and `data_parallel_size` actor GPUs.

    Enough rows: the recipe's sizes. Fewer than `rollout_batch_size`: keep `global_batch_size` and use as many whole
    mini-batches as fit; fewer than one mini-batch: one step of the largest size whose rollouts (`size * n`) still
    split evenly over the actor GPUs (verl asserts that). Raises `TrainSetTooSmallError` when no size fits, or when
    the recipe says `shrink_to_fit: false`.
    """
    want, mini, n = grpo.rollout_batch_size, grpo.global_batch_size, grpo.n
    world = max(1, int(data_parallel_size))
    if rows >= want:
        return BatchFit(want, mini, rows, shrunk=False)
    where = f"{source}: " if source else ""
    head = f"{role} stage: {where}{rows} training rows < {role}.grpo.rollout_batch_size ({want})"
    if rows <= 0:
        raise TrainSetTooSmallError(f"{head}; nothing to train on: {_hint(role)}")
    if not grpo.shrink_to_fit:
        raise TrainSetTooSmallError(
            f"{head}, and {role}.grpo.shrink_to_fit is false: {_hint(role)}, or set shrink_to_fit: true"
        )
    if rows >= mini:
        new_mini = mini
    else:
        new_mini = next((b for b in range(rows, 0, -1) if (b * n) % world == 0), 0)
        if new_mini == 0:
            raise TrainSetTooSmallError(
                f"{head}; no batch of <= {rows} prompts x n = {n} rollouts splits over {world} actor GPUs: "
                f"{_hint(role)}"
            )
    new_rollout = (rows // new_mini) * new_mini
    message = (
        f"{head}: shrinking this stage's batch to rollout_batch_size {new_rollout}, global_batch_size {new_mini} "
        f"(recipe: {want}, {mini}); {rows - new_rollout} row(s) unused per epoch. To avoid it, {_hint(role)}"
    )
    return BatchFit(new_rollout, new_mini, rows, shrunk=True, message=message)
