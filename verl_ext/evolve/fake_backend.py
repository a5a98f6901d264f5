"""A test double of the `Backend` interface: deterministic, instant, no model. For the loop's tests only.

It writes files with the real schemas (records.QUESTION_COLUMNS / PSEUDO_LABEL_COLUMNS) whose content depends only on
the model lineage and the inputs, so two runs give identical artifacts. It can raise, or block until killed, mid-way
through a chosen stage after writing part of its output, to test crash recovery.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.visplay.records import PSEUDO_LABEL_COLUMNS, QUESTION_COLUMNS

from .backend import StageContext

COPIED_COLUMNS = ("id", "source_image_id", "image", "question", "question_type", "iteration", "questioner_checkpoint")


class InjectedCrash(RuntimeError):
    pass


def _h(*parts) -> int:
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def lineage(model: str) -> str:
    """`base` for the base model, else the lineage recorded by the fake merge inside the model dir."""
    meta = Path(model) / "model.json"
    return json.loads(meta.read_text())["lineage"] if meta.is_file() else "base"


class FakeBackend:
    name = "fake"

    def __init__(self, crash_at: str | None = None, block_at: str | None = None, ready_file: str | None = None):
        self.crash_at = crash_at
        self.block_at = block_at
        self.ready_file = ready_file
        self.calls: list[str] = []

    def _interrupt(self, ctx: StageContext) -> None:
        """Called after a stage wrote part of its output."""
        if ctx.spec.key == self.crash_at:
            raise InjectedCrash(f"injected crash in {ctx.spec.key}")
        if ctx.spec.key == self.block_at:
            if self.ready_file:
                Path(self.ready_file).write_text(ctx.spec.key)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # wait to be killed (the test sends SIGKILL)
                time.sleep(0.05)
            raise InjectedCrash(f"{ctx.spec.key}: was not killed in time")

    # -- training: a "checkpoint" that records what it started from ---------------------------------
    def _train(self, ctx: StageContext, role: str) -> dict:
        self.calls.append(ctx.spec.key)
        out = ctx.out("checkpoint")
        steps = getattr(ctx.recipe, role).steps
        info = {"role": role, "init": lineage(ctx.input("init_model")), "iteration": ctx.iteration, "steps": steps}
        if role == "questioner":
            info["frozen_reasoner"] = lineage(ctx.input("reasoner_model"))
        else:
            info["train_rows"] = pq.ParquetFile(ctx.input("train")).metadata.num_rows
        step_dir = out / f"global_step_{steps}" / "actor"
        step_dir.mkdir(parents=True, exist_ok=True)
        (step_dir / "shard_0.json").write_text(json.dumps(info, sort_keys=True))
        self._interrupt(ctx)
        (out / "latest_checkpointed_iteration.txt").write_text(str(steps))
        return {"steps": steps}

    def train_questioner(self, ctx):
        return self._train(ctx, "questioner")

    def train_reasoner(self, ctx):
        return self._train(ctx, "reasoner")

    def merge(self, ctx):
        self.calls.append(ctx.spec.key)
        ckpt = Path(ctx.input("checkpoint"))
        step = int((ckpt / "latest_checkpointed_iteration.txt").read_text())
        info = json.loads((ckpt / f"global_step_{step}" / "actor" / "shard_0.json").read_text())
        letter = "Q" if info["role"] == "questioner" else "S"
        extra = f",S={info['frozen_reasoner']}" if letter == "Q" else f",rows={info['train_rows']}"
        out = ctx.out("model")
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        self._interrupt(ctx)
        (out / "model.json").write_text(json.dumps({"lineage": f"{letter}{info['iteration']}({info['init']}{extra})"}))
        return {"step": step}

    # -- sampling ----------------------------------------------------------------------------------
    def generate_questions(self, ctx):
        self.calls.append(ctx.spec.key)
        model = lineage(ctx.input("model"))
        images = pq.read_table(ctx.input("images"), columns=["id", "image"]).to_pydict()
        n_img = len(images["id"])
        rows = {c: [] for c in QUESTION_COLUMNS}
        for k in range(ctx.recipe.generation.num_questions):
            i = k % n_img
            img_id = images["id"][i]
            h = _h(model, img_id, k, ctx.seed(k % ctx.recipe.generation.shards))
            if h % 5 == 0:
                raw, parsed = f"I cannot write a question ({h})", None
            else:
                question = f"How many shapes of kind {h % 7} are in image {img_id} (variant {h % 3})?"
                parsed = ("numerical", question, str(h % 4))
                raw = f"<type>numerical</type><question>{question}</question><answer>{h % 4}</answer>"
            rows["id"].append(f"{img_id}/{ctx.iteration}/{k}")
            rows["source_image_id"].append(img_id)
            rows["image"].append(images["image"][i])
            rows["raw_output"].append(raw)
            rows["question"].append(parsed[1] if parsed else None)
            rows["question_type"].append(parsed[0] if parsed else None)
            rows["questioner_answer"].append(parsed[2] if parsed else None)
            rows["iteration"].append(ctx.iteration)
            rows["questioner_checkpoint"].append(model)
        table = pa.table(rows)
        out = ctx.out("questions")
        pq.write_table(table.slice(0, table.num_rows // 2), out)  # a partial file first, as a crash would leave
        self._interrupt(ctx)
        pq.write_table(table, out)
        return {"rows": table.num_rows}

    def pseudo_label(self, ctx):
        self.calls.append(ctx.spec.key)
        model = lineage(ctx.input("model"))
        m = ctx.recipe.pseudo_label.m
        q = pq.read_table(ctx.input("questions")).to_pydict()
        rows = {c: [] for c in PSEUDO_LABEL_COLUMNS}
        rows["num_unparsed"] = []
        for i in range(len(q["id"])):
            question = q["question"][i]
            h = _h(model, question)
            if question is None:
                label, conf, n, unparsed = None, 0.0, 0, 0
            else:
                top = h % (m + 1)
                label, conf, n, unparsed = (str(h % 4) if top else None), top / m, m, (m - top) // 2
            for col in COPIED_COLUMNS:
                rows[col].append(q[col][i])
            rows["pseudo_label"].append(label)
            rows["confidence"].append(conf)
            rows["num_samples"].append(n)
            rows["num_unparsed"].append(unparsed)
            rows["filter_reason"].append(None)
        rows["filter_reason"] = pa.array(rows["filter_reason"], pa.string())  # all null: give it its real type
        table = pa.table(rows)
        out = ctx.out("labels")
        pq.write_table(table.slice(0, table.num_rows // 3), out)
        self._interrupt(ctx)
        pq.write_table(table, out)
        return {"rows": table.num_rows}

    def describe(self, ctx):
        return [f"# fake backend: {ctx.spec.key}"]
