"""The arms beside the VisPlay loop, built from the loop's own stage code (`evolve.loop.execute_stage`, the local
backend, the same recipe, seeds and budgets), and the fixed-scorer difficulty of the loop's questions.

- oracle labels: S^b_t = GRPO(S^b_{t-1}) on VisPlay's kept questions of iteration t with the oracle's answers;
- questioner frozen at Q_0: per iteration, Q_0 writes the questions, this arm's S_{t-1} pseudo-labels them, the band
  filter keeps the uncertain ones, and the reasoner trains on them: VisPlay without the questioner's learning;
- difficulty under S_0: Q_t's questions pseudo-labelled by the fixed base reasoner, so that a change in difficulty
  is a change in the questions, not in the reasoner that scores them.

Each side stage runs in a `.work` dir and is renamed into place with its summary.json: a re-run resumes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

SUMMARY = "summary.json"


def side_stage(
    recipe, backend, root: Path, t: int, name: str, inputs: dict[str, str], log: Callable[[str], None], tag: str = ""
) -> tuple[Path, dict]:
    """Run loop stage `name` of iteration `t` into `root/iter_<t>/<name><tag>` unless it is there; returns (output
    dir, summary)."""
    from verl_ext.atomic_io import atomic_write_json
    from verl_ext.evolve.backend import StageContext
    from verl_ext.evolve.loop import execute_stage
    from verl_ext.evolve.stages import StageSpec

    out_dir = root / f"iter_{t}" / f"{name}{tag}"
    if (out_dir / SUMMARY).is_file():
        return out_dir, json.loads((out_dir / SUMMARY).read_text())
    work = root / ".work" / f"iter_{t}" / f"{name}{tag}"
    shutil.rmtree(work, ignore_errors=True)
    spec = StageSpec(
        iteration=t,
        name=name,
        config={"side_stage": name, "iteration": t, "root": str(root)},
        inputs=inputs,
        output_dir=out_dir,
        work_dir=work,
        log_path=root / "logs" / f"iter_{t}" / f"{name}{tag}.log",
    )
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary = execute_stage(spec, StageContext(recipe=recipe, spec=spec, run_dir=root, log=log), backend) or {}
    summary = {**summary, "seconds": round(time.monotonic() - started, 1)}
    atomic_write_json(work / SUMMARY, summary)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work.rename(out_dir)
    return out_dir, summary


def final_model(reasoner_dir: Path) -> str:
    from verl_ext.evolve.local_backend import FINAL_DIR

    return str(reasoner_dir / FINAL_DIR)


# ---------------------------------------------------------------------------------------------------------------
# Oracle labels
# ---------------------------------------------------------------------------------------------------------------


def write_oracle_train(visplay_train: Path, out: Path) -> dict:
    """The kept questions of an iteration with the oracle's answer as label (questions outside the grammar dropped)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .metrics import oracle_for

    table = pq.read_table(visplay_train)
    ids, questions = table.column("source_image_id").to_pylist(), table.column("question").to_pylist()
    results = [oracle_for(i, q) for i, q in zip(ids, questions, strict=True)]
    keep = [r.ok for r in results]
    pseudo = table.column("pseudo_label").to_pylist()
    labelled = table.set_column(
        table.column_names.index("pseudo_label"), "pseudo_label", pa.array([r.answer for r in results], pa.string())
    ).append_column("visplay_pseudo_label", pa.array(pseudo, pa.string()))
    labelled = labelled.filter(pa.array(keep, pa.bool_()))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(labelled, tmp)
    tmp.replace(out)
    return {"kept": table.num_rows, "rows": labelled.num_rows, "dropped_outside_grammar": table.num_rows - sum(keep)}


def train_on_oracle_labels(recipe, backend, root: Path, t: int, kept: Path, init_model: str, log) -> tuple[str, dict]:
    """S^b_t: the reasoner stage on `kept` (a filter's train.parquet) relabelled by the oracle. (model, summary)"""
    train = root / f"iter_{t}" / "train.parquet"
    data = write_oracle_train(kept, train)
    out, summary = side_stage(
        recipe, backend, root, t, "reasoner", {"init_model": init_model, "train": str(train)}, log
    )
    return final_model(out), {**summary, "data": data}


# ---------------------------------------------------------------------------------------------------------------
# The questioner frozen at Q_0
# ---------------------------------------------------------------------------------------------------------------


def frozen_iteration(recipe, backend, root: Path, t: int, q0: str, images: str, reasoner: str, log) -> dict:
    """One iteration with the questioner frozen at `q0`: generate, pseudo-label with `reasoner` (S_{t-1} of this
    arm), band filter, reasoner training. Returns the stage dirs and the new reasoner."""
    gen, _ = side_stage(recipe, backend, root, t, "generate", {"model": q0, "images": images}, log)
    questions = str(gen / "questions.parquet")
    pl, _ = side_stage(recipe, backend, root, t, "pseudo_label", {"model": reasoner, "questions": questions}, log)
    filt, stats = side_stage(
        recipe, backend, root, t, "filter", {"labels": str(pl / "labels.parquet"), "questions": questions}, log
    )
    rs, summary = side_stage(
        recipe, backend, root, t, "reasoner", {"init_model": reasoner, "train": str(filt / "train.parquet")}, log
    )
    return {"generate": gen, "filter": filt, "reasoner": final_model(rs), "summary": summary}


# ---------------------------------------------------------------------------------------------------------------
# Difficulty of Q_t's questions under the fixed S_0
# ---------------------------------------------------------------------------------------------------------------


def subsample_questions(questions: Path, out: Path, n: int) -> Path:
    """The first `n` rows of a questions.parquet (the loop's image order: no choice made by looking at them)."""
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file():
        table = pq.read_table(questions)
        tmp = out.with_name(f".{out.name}.tmp")
        pq.write_table(table.slice(0, min(n, table.num_rows)), tmp)
        tmp.replace(out)
    return out


def s0_difficulty(recipe, backend, root: Path, t: int, questions: Path, s0: str, n: int, log) -> dict:
    """1 - mean confidence of the base reasoner S_0 on the first `n` of `questions` (m votes each, the loop's
    pseudo-label settings), and the precision of S_0's majority against the oracle."""
    import pyarrow.parquet as pq

    from .metrics import label_metrics
    from .stats import difficulty

    sub = subsample_questions(questions, root / f"iter_{t}" / "s0_questions.parquet", n)
    out, _ = side_stage(recipe, backend, root, t, "pseudo_label", {"model": s0, "questions": str(sub)}, log, "_s0")
    labels = pq.read_table(
        out / "labels.parquet", columns=["source_image_id", "question", "pseudo_label", "confidence"]
    ).to_pydict()
    conf = [c for c, label in zip(labels["confidence"], labels["pseudo_label"], strict=True) if label is not None]
    labels["filter_reason"] = ["kept"] * len(labels["question"])
    precision = label_metrics(labels, (recipe.filter.low, recipe.filter.high))["precision_all"]
    return {"questions": len(labels["question"]), "labelled": len(conf), "difficulty": difficulty(conf),
            "s0_precision": precision}  # fmt: skip
