"""The `local` backend: every stage in the loop's own process, TRL GRPO for training and HF `generate` for sampling.

For `recipes/tiny.yaml` and laptops. Same core, prompts, rewards and artifacts as the verl backend: the questioner's
frozen reasoner runs in-process (one model per stage), generation and pseudo-labelling run `verl_ext.inference`
with its hf engine (called in-process; by default its Ray runner starts a local Ray with HF engine actors), and
checkpoints are HF model dirs from the start (merge only links them into place).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from . import commands
from .backend import StageContext, resolve_model
from .manifest import STAGE_MARKER

FINAL_DIR = "final"  # = verl_ext.local.grpo.FINAL_DIR (not imported: describe() must not import torch)
INFER_BATCH_SIZE = 16  # requests per HF generate call


class LocalBackend:
    name = "local"

    def __init__(self, cache_dir: str | Path | None = None, warmup=None, infer_batch_size: int = INFER_BATCH_SIZE):
        """`cache_dir`: where warmed models are cached (default $VISPLAY_CACHE or ~/.cache/visplay); `warmup`: a
        `verl_ext.local.warmup.WarmupConfig` replacing the recipe's `model.warmup` settings (tests use short ones;
        seed and pixels always come from the recipe)."""
        self.cache_dir = cache_dir
        self.warmup = warmup
        self.infer_batch_size = infer_batch_size

    # -- format warm-up ----------------------------------------------------------------------------
    def warmup_config(self, ctx: StageContext):
        from verl_ext.local.warmup import WarmupConfig

        images, settings = ctx.recipe.images, ctx.recipe.model.warmup
        base = self.warmup or WarmupConfig(
            examples=settings.examples, num_images=settings.num_images, steps=settings.steps, lr=settings.lr
        )
        return dataclasses.replace(
            base,
            seed=ctx.recipe.seed,
            min_pixels=images.min_pixels,
            max_pixels=images.max_pixels,
        )

    def format_warmup(self, ctx: StageContext) -> dict:
        from verl_ext.local.models import copy_tree
        from verl_ext.local.warmup import warmed_model_path

        recipe = ctx.recipe
        base = resolve_model(ctx.input("base"))
        cached = warmed_model_path(
            base, self.warmup_config(ctx), recipe.prompts.questioner, recipe.prompts.reasoner, self.cache_dir, ctx.log
        )
        copy_tree(cached, ctx.out("model"))
        report = json.loads((cached / "warmup.json").read_text())
        keep = ("question_parse_rate", "boxed_rate", "answer_correct_rate", "confidence_histogram")
        return {
            "cache": str(cached),
            "before": {k: report.get("before", {}).get(k) for k in keep},
            "after": {k: report.get("after", {}).get(k) for k in keep},
            "loss": report.get("loss"),
            "build_seconds": report.get("seconds"),
        }

    # -- training ----------------------------------------------------------------------------------
    def train_questioner(self, ctx: StageContext) -> dict:
        import pyarrow.parquet as pq

        from verl_ext.local.grpo import make_dataset, run_grpo
        from verl_ext.local.models import load_model, load_processor
        from verl_ext.local.rewards import QuestionerReward
        from verl_ext.prompts import render_questioner_prompt

        recipe, q = ctx.recipe, ctx.recipe.questioner
        trust = recipe.model.trust_remote_code
        pixels = (recipe.images.min_pixels, recipe.images.max_pixels)
        init, reasoner_path = resolve_model(ctx.input("init_model")), resolve_model(ctx.input("reasoner_model"))
        if q.reasoner_service == "endpoint":
            ctx.log("[questioner] local backend: the frozen reasoner runs in-process; reasoner_endpoint is not used")
        reasoner = load_model(reasoner_path, trust_remote_code=trust, train=False).requires_grad_(False)
        reward = QuestionerReward(
            reasoner,
            load_processor(reasoner_path, *pixels, trust_remote_code=trust),
            m=q.m,
            temperature=q.reasoner_temperature,
            top_p=q.reasoner_top_p,
            top_k=q.reasoner_top_k,
            max_new_tokens=q.reasoner_max_tokens,
            mode=q.reward_mode,
            lam=q.lam,
            cluster_threshold=q.cluster_threshold,
            reasoner_prompt=recipe.prompts.reasoner,
            seed=ctx.seed(1),
            batch_size=self.infer_batch_size,
        )
        images = pq.read_table(ctx.input("images"), columns=["id", "image"]).to_pydict()
        instruction = render_questioner_prompt(recipe.prompts.questioner)
        rows = {
            "prompt": [[{"role": "user", "content": instruction}] for _ in images["id"]],
            "image": images["image"],
            "image_id": images["id"],
        }
        summary = run_grpo(
            role="questioner",
            model_path=init,
            processor=load_processor(init, *pixels, trust_remote_code=trust),
            dataset=make_dataset(rows, q.grpo.rollout_batch_size),
            reward_funcs=[reward],
            grpo=q.grpo,
            steps=q.steps,
            out_dir=ctx.out("checkpoint"),
            seed=ctx.seed(),
            checkpoint_every=q.checkpoint_every,
            loggers=recipe.logging.loggers,
            trust_remote_code=trust,
            log=ctx.log,
        )
        return {**summary, "reward": _mean_metrics(reward.history)}

    def train_reasoner(self, ctx: StageContext) -> dict:
        import pyarrow.parquet as pq

        from verl_ext.local.grpo import make_dataset, run_grpo
        from verl_ext.local.models import copy_tree, load_processor
        from verl_ext.local.rewards import ReasonerReward
        from verl_ext.prompts import render_reasoner_prompt

        recipe, r = ctx.recipe, ctx.recipe.reasoner
        trust = recipe.model.trust_remote_code
        init = resolve_model(ctx.input("init_model"))
        table = pq.read_table(ctx.input("train"), columns=["question", "question_type", "pseudo_label", "image"])
        data = table.to_pydict()
        keep = [i for i, label in enumerate(data["pseudo_label"]) if label and data["question"][i]]
        if not keep:
            # An empty band: S_t = S_{t-1}, recorded as such (the run goes on; the stats show the empty filter).
            ctx.log("[reasoner] no kept questions: the reasoner is carried over unchanged")
            copy_tree(init, ctx.out("checkpoint") / FINAL_DIR, ignore=(STAGE_MARKER,))
            return {"steps": 0, "rows": 0, "skipped": "no training data"}
        prompts = [
            render_reasoner_prompt(data["question"][i], recipe.prompts.reasoner, data["question_type"][i])
            for i in keep
        ]
        rows = {
            "prompt": [[{"role": "user", "content": p}] for p in prompts],
            "image": [data["image"][i] for i in keep],
            "pseudo_label": [data["pseudo_label"][i] for i in keep],
        }
        reward = ReasonerReward(r.format_weight)
        summary = run_grpo(
            role="reasoner",
            model_path=init,
            processor=load_processor(
                init, recipe.images.min_pixels, recipe.images.max_pixels, trust_remote_code=trust
            ),
            dataset=make_dataset(rows, r.grpo.rollout_batch_size),
            reward_funcs=[reward],
            grpo=r.grpo,
            steps=r.steps,
            out_dir=ctx.out("checkpoint"),
            seed=ctx.seed(),
            checkpoint_every=r.checkpoint_every,
            loggers=recipe.logging.loggers,
            trust_remote_code=trust,
            log=ctx.log,
        )
        return {**summary, "rows": len(keep), "reward": _mean_metrics(reward.history)}

    def merge(self, ctx: StageContext) -> dict:
        from verl_ext.local.models import copy_tree

        src = Path(ctx.input("checkpoint")) / FINAL_DIR
        if not (src / "config.json").is_file():
            raise FileNotFoundError(f"{src}: no final model in the checkpoint dir (did the training stage finish?)")
        copy_tree(src, ctx.out("model"), ignore=(STAGE_MARKER,))
        return {"source": str(src)}

    # -- sampling ----------------------------------------------------------------------------------
    def infer_command(self, ctx: StageContext, planning: bool = False):
        """The `verl_ext.inference` command of a generate / pseudo_label stage, with the hf engine."""
        keep = {"resolve": lambda p: p} if planning else {}  # dry runs never build models
        build = commands.generate_command if ctx.spec.name == "generate" else commands.pseudo_label_command
        cmd = build(ctx.recipe, ctx.spec, engine="hf", **keep)
        cmd.argv += ["--batch-size", str(self.infer_batch_size)]
        return cmd

    def _infer(self, ctx: StageContext) -> None:
        from verl_ext.inference import offline as infer
        from verl_ext.local.models import configure_threads

        cmd = self.infer_command(ctx)
        configure_threads(_approx_params(resolve_model(ctx.input("model"))))
        ctx.log(f"[evolve] {ctx.spec.key}: {cmd.description} (hf engine)")
        code = infer.main(cmd.argv[3:])  # without `python -m verl_ext.inference`
        if code:
            raise RuntimeError(f"stage {ctx.spec.key}: verl_ext.inference exited with {code}")
        shutil.rmtree(ctx.spec.work_dir / "shards", ignore_errors=True)  # the combined parquet is complete

    def generate_questions(self, ctx: StageContext) -> dict:
        import pyarrow.parquet as pq

        self._infer(ctx)
        questions = pq.read_table(ctx.out("questions"), columns=["question"]).column("question").to_pylist()
        parsed = sum(q is not None for q in questions)
        return {"rows": len(questions), "parsed": parsed, "parse_rate": parsed / max(1, len(questions))}

    def pseudo_label(self, ctx: StageContext) -> dict:
        import pyarrow.parquet as pq

        self._infer(ctx)
        t = pq.read_table(ctx.out("labels"), columns=["pseudo_label", "confidence"]).to_pydict()
        conf = [c for c, label in zip(t["confidence"], t["pseudo_label"], strict=True) if label is not None]
        return {
            "rows": len(t["pseudo_label"]),
            "labelled": len(conf),
            "mean_confidence": sum(conf) / len(conf) if conf else None,
        }

    # -- dry run -----------------------------------------------------------------------------------
    def describe(self, ctx: StageContext) -> list[str]:
        spec, recipe = ctx.spec, ctx.recipe
        if spec.name == "warmup":
            return [
                f"# in-process (local): format warm-up SFT of {spec.inputs['base']} on templated questions and "
                "boxed answers, built once into $VISPLAY_CACHE/warmup-<hash>, linked into "
                f"{spec.work_path('model')}"
            ]
        if spec.name in ("questioner", "reasoner"):
            role = getattr(recipe, spec.name)
            g = role.grpo
            lines = [
                f"# in-process (local): TRL GRPOTrainer, {spec.name} from {spec.inputs['init_model']}",
                f"#   {role.steps} steps x {g.rollout_batch_size} prompts x n={g.n}, "
                f"{g.rollout_batch_size // g.global_batch_size} update(s) per step, lr {g.lr}, KL(k3) {g.kl_coef}, "
                f"max response {g.max_response_length} -> {spec.work_path('checkpoint')}/{FINAL_DIR}",
            ]
            if spec.name == "questioner":
                q = recipe.questioner
                lines.append(
                    f"#   reward {q.reward_mode} (lambda {q.lam}); frozen reasoner {spec.inputs['reasoner_model']} "
                    f"in-process, m={q.m}, T={q.reasoner_temperature}, top_p={q.reasoner_top_p}, "
                    f"top_k={q.reasoner_top_k}"
                )
            else:
                lines.append(
                    f"#   data {spec.inputs['train']}; reward reasoner_score, format weight {role.format_weight}"
                )
            return lines
        if spec.name.endswith("_merge"):
            return [f"# in-process (local): link {spec.inputs['checkpoint']}/{FINAL_DIR} -> {spec.work_path('model')}"]
        if spec.name not in ("generate", "pseudo_label"):
            raise ValueError(f"local backend has no stage {spec.name}")
        cmd = self.infer_command(ctx, planning=True)
        return [f"# called in-process (local), equivalent to: {cmd.description}", cmd.render()]


def _approx_params(model_dir: str) -> int:
    """An upper bound on the parameter count from the weight files' size (2 bytes a parameter at least)."""
    size = sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))
    size += sum(p.stat().st_size for p in Path(model_dir).glob("*.bin"))
    return size // 2


def _mean_metrics(history: list[dict]) -> dict:
    """Per-metric mean over a stage's reward calls (one call per rollout batch)."""
    keys = sorted({k for h in history for k in h})
    return {k.split("/")[-1]: round(sum(h[k] for h in history if k in h) / sum(k in h for h in history), 4)
            for k in keys}  # fmt: skip
