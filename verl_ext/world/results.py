"""The experiment's report: results.json (per seed and mean +- spread), results.md (tables), coevolution.png, and
report.html (the run report of the first seed's loop with these results on top)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .metrics import aggregate, dig, pooled_precision_by_confidence, spread

ARMS = ("visplay", "oracle", "base")
ARM_LABELS = {"visplay": "VisPlay", "oracle": "(b) oracle labels", "base": "(a) no training"}
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
QUESTION_CURVES = {  # the co-evolution plot's question side, per iteration t >= 1
    "loop.stats.difficulty": "difficulty (1 - mean confidence)",
    "loop.labels.precision_kept": "pseudo-label precision (kept)",
    "loop.questions.oracle_parsable_share": "oracle-parsable share",
}


@dataclass(frozen=True)
class Table:
    """A results table as formatted cells: `render_markdown` writes it as markdown, the run report as HTML."""

    id: str
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def _finite(v) -> float | None:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def _fmt(cell: dict | None, digits: int = 3) -> str:
    """A `spread` cell as "mean ± std" over seeds: the mean alone for one seed, "–" where there is no mean."""
    mean = _finite((cell or {}).get("mean"))
    if mean is None:
        return "–"
    std = _finite(cell.get("std"))
    if cell.get("n") == 1 or std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _seconds(value: dict | float | None) -> str:
    text = _fmt(value if isinstance(value, dict) else {"mean": value, "n": 1}, 0)
    return text if text == "–" else f"{text} s"


def _text(value) -> str:
    return "–" if value is None else str(value)


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


def setup_line(results: dict) -> str:
    """What was run: seeds, T, recipe, labeled seed set, eval set."""
    cfg, seed_set, ev = (results.get(k) or {} for k in ("config", "seed_set", "eval"))
    seeds = results.get("seeds") or []
    recipe = Path(cfg["recipe"]).name if cfg.get("recipe") else "–"
    overrides = f" with {list(cfg['overrides'])}" if cfg.get("overrides") else ""
    return (
        f"{len(seeds)} seed(s) {seeds}, T = {_text(cfg.get('iterations'))}; recipe {recipe}{overrides}. "
        f"Labeled seed set: {_text(seed_set.get('images'))} images, "
        f"{_text((seed_set.get('examples') or {}).get('reasoner'))} questions "
        f"(warm-up {_text(seed_set.get('warmup_steps'))} steps). Eval: {_text(ev.get('size'))} held-out questions "
        f"({_text(ev.get('split'))} split), greedy and {_text(ev.get('samples'))} samples at "
        f"T = {_text(ev.get('temperature'))}. Cells: mean ± std over seeds."
    )


def blind_baseline(results: dict) -> str:
    """The blind baseline's accuracy (the seed set's most common answer per template), formatted."""
    summary = results.get("summary") or [{}]
    return _fmt(summary[0].get("prior_accuracy"))


def time_line(results: dict) -> str:
    """How long it took: wall time, the base model's warm-up, and per seed the loop, control (b), evaluation."""
    sec = results.get("seconds") or {}
    base, built = sec.get("base_model"), (results.get("seed_set") or {}).get("warmup_seconds")
    if isinstance(base, (int, float)) and isinstance(built, (int, float)) and base < built / 2:
        warmup = f"base model warm-up {_seconds(built)} when built, taken from the cache here"
    else:
        warmup = f"base model (warm-up) {_seconds(base)}"
    return (
        f"Wall time {_seconds(sec.get('wall'))} with {_text((results.get('config') or {}).get('jobs'))} "
        f"process(es), {warmup}; per seed: loop "
        f"{_seconds(sec.get('loop'))}, control (b) {_seconds(sec.get('control'))}, "
        f"evaluation {_seconds(sec.get('eval'))}."
    )


def _precision_cell(cell: dict | None) -> str:
    precision = _finite((cell or {}).get("precision"))
    return "–" if precision is None else f"{precision:.2f} (n={cell.get('n')})"


def results_tables(results: dict) -> list[Table]:
    """Every results table, formatted: accuracy per arm, with images swapped, the loop's oracle metrics, pseudo-label
    precision per confidence value, accuracy per question family."""
    s = results.get("summary") or []
    arm_titles = [ARM_LABELS[arm] for arm in ARMS]
    kinds = ("greedy", "sampled", "majority")
    tables = [
        Table(
            "accuracy",
            "Reasoner accuracy on the held-out eval set",
            ["t", *(f"{ARM_LABELS[arm]} {kind}" for kind in kinds for arm in ARMS)],
            [
                [str(rec["t"]), *(_fmt(rec.get(f"accuracy.{arm}.{kind}")) for kind in kinds for arm in ARMS)]
                for rec in s
            ],
        ),
        Table(
            "swapped",
            "Does the reasoner look at the image? Greedy accuracy with the eval images swapped between questions",
            ["t", *arm_titles],
            [[str(rec["t"]), *(_fmt(rec.get(f"accuracy.{arm}.greedy_swapped")) for arm in ARMS)] for rec in s],
            note="Each question is shown another eval image of the same kind: accuracy that survives owes nothing to "
            f"the image. Blind baseline (the seed set's most common answer per template): {blind_baseline(results)}.",
        ),
        Table(
            "loop",
            "The loop, measured by the oracle (iteration t: questions of Q_t, pseudo-labels of S_{t-1})",
            ["t", *LOOP.values()],
            [
                [str(rec["t"]), *(_fmt(rec.get(k), 1 if k.endswith(".kept") else 3) for k in LOOP)]
                for rec in s
                if rec["t"] > 0
            ],
        ),
    ]
    pbc = results.get("precision_by_confidence") or {}
    its = sorted((t for t in pbc if pbc[t]), key=int)  # t = 0 has no pseudo-labels
    if its:
        ps = sorted({p for t in its for p in pbc[t]}, key=float)
        in_band = {p for t in its for p, cell in pbc[t].items() if cell.get("in_band")}
        tables.append(
            Table(
                "precision-by-confidence",
                "Pseudo-label precision by confidence p (pooled over seeds; * = inside the band)",
                ["p", *(f"t={t}" for t in its)],
                [
                    [f"{float(p):.3g}{'*' if p in in_band else ''}", *(_precision_cell(pbc[t].get(p)) for t in its)]
                    for p in ps
                ],
            )
        )
    fam = results.get("accuracy_by_family_final") or {}
    if fam.get("base") and s:
        tables.append(
            Table(
                "by-family",
                f"Greedy accuracy by question family at t = {s[-1]['t']}",
                ["family", *arm_titles],
                [[f, *(_fmt((fam.get(arm) or {}).get(f)) for arm in ARMS)] for f in sorted(fam["base"])],
            )
        )
    return tables


def render_markdown(results: dict) -> str:
    lines = ["# VisPlay in the controlled world", "", setup_line(results), ""]
    for table in results_tables(results):
        lines += [f"## {table.title}", ""]
        lines += [table.note, ""] if table.note else []
        lines += [*_table(table.header, table.rows), ""]
    lines += ["## Time", "", time_line(results), ""]
    return "\n".join(lines)


def curve(summary: list[dict], key: str, ts: list[int]) -> tuple[list[float | None], list[float | None]]:
    """Mean and std over seeds of one summary metric at each iteration of `ts` (None where missing)."""
    cells = {rec["t"]: rec.get(key) or {} for rec in summary}
    return (
        [_finite(cells.get(t, {}).get("mean")) for t in ts],
        [_finite(cells.get(t, {}).get("std")) for t in ts],
    )


def plot(results: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    s = results["summary"]

    def series(key, ts):
        mean, std = curve(s, key, ts)
        return [float("nan") if m is None else m for m in mean], [v or 0.0 for v in std]

    all_t = [rec["t"] for rec in s]
    loop_t = [t for t in all_t if t > 0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for key, label in QUESTION_CURVES.items():
        mean, std = series(key, loop_t)
        ax.errorbar(loop_t, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set_title("questions of Q_t (pseudo-labelled by S_{t-1})")
    ax = axes[1]
    for arm, style in (("visplay", "-o"), ("oracle", "--s"), ("base", ":^")):
        mean, std = series(f"accuracy.{arm}.greedy", all_t)
        ax.errorbar(all_t, mean, yerr=std, fmt=style, capsize=3, label=f"{ARM_LABELS[arm]}, greedy")
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


def write_outputs(
    cfg, per_seed: list[dict], out: Path, wall_seconds: float | None = None, base_seconds: float | None = None
) -> dict:
    """results.json, results.md, coevolution.png and report.html in `out`: the run report of the first seed's loop
    run with the world section on top, or the world section alone when that run directory is missing."""
    from verl_ext.atomic_io import atomic_write_json, atomic_write_text

    from .experiment import SeedPaths

    out = Path(out)
    results = summarize(cfg, per_seed, wall_seconds, base_seconds)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", render_markdown(results))
    plot(results, out / "coevolution.png")
    run_dir = SeedPaths(out / f"seed_{cfg.seed_list()[0]}").run_dir
    write_html_report(results, run_dir if (run_dir / "manifest.json").is_file() else None, out / "report.html")
    return results


PAGE_TITLE = "VisPlay in the controlled world"


def write_html_report(results: dict, run_dir: str | Path | None, out: str | Path | None = None) -> Path:
    """The run report of `run_dir` with the world section on top, or the world section alone without a run."""
    from verl_ext.report.render import write_report as write_run_report

    from .section import world_section

    return write_run_report(run_dir, out, sections=[world_section(results)], title=PAGE_TITLE)


def load_results(path: str | Path) -> dict:
    """A results.json that `write_outputs` wrote; FileNotFoundError or ValueError naming the path for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file (expected the results.json that python -m verl_ext.world writes)"
        )
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(results, dict) or not isinstance(results.get("summary"), list):
        raise ValueError(f"{path}: not a controlled-world results.json (no 'summary' list)")
    return results
