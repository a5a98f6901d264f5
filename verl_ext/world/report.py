"""The experiment's report: results.json (per seed and mean +- spread), results.md (tables), coevolution.png."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .metrics import aggregate, dig, pooled_precision_by_confidence, spread

ARMS = ("visplay", "oracle", "base")
ACCURACY = [f"accuracy.{arm}.{kind}" for arm in ARMS for kind in ("greedy", "sampled", "majority", "greedy_swapped")]
ACCURACY.append("prior_accuracy")
LOOP = {
    "loop.stats.difficulty": "difficulty (1 - mean p)",
    "loop.labels.precision_kept": "pseudo-label precision, kept",
    "loop.labels.precision_all": "pseudo-label precision, all labelled",
    "loop.stats.question_parse_rate": "question parse rate",
    "loop.questions.oracle_parsable_share": "oracle-parsable share",
    "loop.stats.diversity": "diversity (clusters / questions)",
    "loop.questions.template_entropy": "template entropy",
    "loop.stats.kept": "kept questions",
    "loop.questions.questioner_answer_accuracy": "questioner's own answer correct",
}
EXTRA = ["loop.stats.answer_parse_rate", "loop.labels.kept_oracle_ok", "control.data.rows", "control.rows"]


def _fmt(cell: dict, digits: int = 3) -> str:
    if not cell or cell.get("mean") is None:
        return "–"
    if cell["n"] == 1:
        return f"{cell['mean']:.{digits}f}"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def summarize(cfg, per_seed: list[dict], wall_seconds: float | None = None, base_seconds: float | None = None) -> dict:
    summary = aggregate(per_seed, ACCURACY + list(LOOP) + EXTRA)
    final_t = max(rec["t"] for rec in summary)
    families = sorted({f for run in per_seed for f in (dig(run["iterations"][0], "accuracy.base.by_family") or {})})
    by_family = {
        arm: {
            fam: spread(
                dig(rec, f"accuracy.{arm}.by_family.{fam}.greedy")
                for run in per_seed
                for rec in run["iterations"]
                if rec["t"] == final_t
            )
            for fam in families
        }
        for arm in ARMS
    }
    first = per_seed[0]
    return {
        "config": dataclasses.asdict(cfg),
        "seeds": [run["seed"] for run in per_seed],
        "seed_set": first["seed_set"],
        "eval": first["eval"],
        "summary": summary,
        "precision_by_confidence": {str(k): v for k, v in pooled_precision_by_confidence(per_seed).items()},
        "accuracy_by_family_final": by_family,
        "seconds": {
            "wall": wall_seconds,
            "base_model": base_seconds,  # the warm-up (0 when it came from the cache)
            "per_seed": {str(run["seed"]): run["seconds"]["total"] for run in per_seed},
            "loop": spread(run["seconds"]["loop"] for run in per_seed),
            "control": spread(run["seconds"]["control"] for run in per_seed),
            "eval": spread(run["seconds"]["eval"] for run in per_seed),
        },
        "per_seed": per_seed,
    }


def render_markdown(results: dict) -> str:
    s, cfg = results["summary"], results["config"]
    n = len(results["seeds"])
    seed_set = results["seed_set"]
    ex = seed_set.get("examples") or {}
    lines = [
        "# VisPlay in the controlled world",
        "",
        f"{n} seed(s) {results['seeds']}, T = {cfg['iterations']}; recipe `{Path(cfg['recipe']).name}`"
        + (f" with {list(cfg['overrides'])}" if cfg["overrides"] else "")
        + f". Labeled seed set: {seed_set['images']} images, {ex.get('reasoner', '?')} questions "
        f"(warm-up {seed_set['warmup_steps']} steps). Eval: {results['eval']['size']} held-out questions "
        f"(`{results['eval']['split']}` split), greedy and {results['eval']['samples']} samples at "
        f"T = {results['eval']['temperature']}. Cells: mean ± std over seeds.",
        "",
        "## Reasoner accuracy on the held-out eval set",
        "",
    ]
    header = ["t"] + [
        f"{title} {kind}"
        for kind in ("greedy", "sampled")
        for title in ("VisPlay", "(b) oracle labels", "(a) no training")
    ]
    rows = []
    for rec in s:
        rows.append(
            [str(rec["t"])] + [_fmt(rec[f"accuracy.{arm}.{kind}"]) for kind in ("greedy", "sampled") for arm in ARMS]
        )
    lines += _table(header, rows)
    prior = s[0].get("prior_accuracy") or {}
    lines += [
        "",
        "## Does the reasoner look at the image? Greedy accuracy with the eval images swapped between questions",
        "",
        "Each question is shown another eval image of the same kind: accuracy that survives owes nothing to the "
        "image. "
        f"Blind baseline (the seed set's most common answer per template): {_fmt(prior)}.",
        "",
    ]
    rows = [[str(rec["t"])] + [_fmt(rec[f"accuracy.{arm}.greedy_swapped"]) for arm in ARMS] for rec in s]
    lines += _table(["t", "VisPlay", "(b) oracle labels", "(a) no training"], rows)
    lines += ["", "## The loop, measured by the oracle (iteration t: questions of Q_t, pseudo-labels of S_{t-1})", ""]
    rows = [
        [str(rec["t"])] + [_fmt(rec[k], 1 if k.endswith(".kept") else 3) for k in LOOP] for rec in s if rec["t"] > 0
    ]
    lines += _table(["t", *LOOP.values()], rows)
    pbc = results["precision_by_confidence"]
    if pbc:
        its = sorted(pbc, key=int)
        ps = sorted({p for t in its for p in pbc[t]}, key=float)
        lines += ["", "## Pseudo-label precision by confidence p (pooled over seeds; * = inside the band)", ""]
        rows = []
        for p in ps:
            cells = []
            band = False
            for t in its:
                cell = pbc[t].get(p)
                band = band or bool(cell and cell["in_band"])
                cells.append("–" if not cell else f"{cell['precision']:.2f} (n={cell['n']})")
            rows.append([f"{float(p):.3g}{'*' if band else ''}", *cells])
        lines += _table(["p", *[f"t={t}" for t in its]], rows)
    fam = results["accuracy_by_family_final"]
    if fam.get("base"):
        lines += ["", f"## Greedy accuracy by question family at t = {s[-1]['t']}", ""]
        rows = [[f, *[_fmt(fam[arm][f]) for arm in ARMS]] for f in sorted(fam["base"])]
        lines += _table(["family", "VisPlay", "(b) oracle labels", "(a) no training"], rows)
    sec = results["seconds"]
    lines += [
        "",
        "## Time",
        "",
        f"Wall time {sec['wall'] or 0:.0f} s with {cfg['jobs']} process(es), base model (warm-up) "
        f"{sec.get('base_model') or 0:.0f} s; per seed: loop {_fmt(sec['loop'], 0)} s, "
        f"control (b) {_fmt(sec['control'], 0)} s, evaluation {_fmt(sec['eval'], 0)} s.",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    s = results["summary"]

    def series(key, ts):
        recs = {rec["t"]: rec[key] for rec in s}
        mean = [recs[t]["mean"] if recs[t]["mean"] is not None else float("nan") for t in ts]
        std = [recs[t]["std"] or 0.0 for t in ts]
        return mean, std

    all_t = [rec["t"] for rec in s]
    loop_t = [t for t in all_t if t > 0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for key, label in (
        ("loop.stats.difficulty", "difficulty (1 - mean confidence)"),
        ("loop.labels.precision_kept", "pseudo-label precision (kept)"),
        ("loop.questions.oracle_parsable_share", "oracle-parsable share"),
    ):
        mean, std = series(key, loop_t)
        ax.errorbar(loop_t, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set_title("questions of Q_t (pseudo-labelled by S_{t-1})")
    ax = axes[1]
    for arm, style in (("visplay", "-o"), ("oracle", "--s"), ("base", ":^")):
        mean, std = series(f"accuracy.{arm}.greedy", all_t)
        ax.errorbar(all_t, mean, yerr=std, fmt=style, capsize=3, label=f"{_title(arm)}, greedy")
    mean, std = series("accuracy.visplay.sampled", all_t)
    ax.errorbar(all_t, mean, yerr=std, fmt="-.o", capsize=3, alpha=0.6, label="VisPlay, sampled (T = 1)")
    ax.set_title("reasoner accuracy on the held-out eval set")
    for ax, ts in zip(axes, (loop_t, all_t), strict=True):
        ax.set_xlabel("iteration t")
        ax.set_xticks(ts)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"VisPlay co-evolution in the controlled world ({len(results['seeds'])} seeds, mean ± std)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _title(arm: str) -> str:
    return {"visplay": "VisPlay", "oracle": "(b) oracle labels", "base": "(a) no training"}[arm]


def write_report(
    cfg, per_seed: list[dict], out: Path, wall_seconds: float | None = None, base_seconds: float | None = None
) -> dict:
    from verl_ext.evolve.manifest import atomic_write_json, atomic_write_text

    results = summarize(cfg, per_seed, wall_seconds, base_seconds)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", render_markdown(results))
    plot(results, out / "coevolution.png")
    return results


def load_results(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
