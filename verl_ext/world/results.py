"""The experiment's report: results.json (per seed and mean +- spread), results.md (tables), coevolution.png, and
report.html (the run report of the first seed's loop with these results on top)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .analysis import PSEUDO_ARMS, TRAINED, compare, pooled_precision
from .experiment import ARMS
from .metrics import aggregate, dig, spread

ARM_LABELS = {
    "base": "base",
    "oracle": "oracle labels",
    "visplay": "VisPlay",
    "frozen": "VisPlay, Q frozen at Q0",
}
ACCURACY = [f"accuracy.{arm}.{kind}" for arm in ARMS for kind in ("greedy", "sampled", "greedy_swapped")]
ACCURACY.append("prior_accuracy")
LOOP = {  # per pseudo-label arm (VisPlay, frozen questioner): key below `loop.<arm>.` or `s0.<arm>.`
    "loop.stats.difficulty": "difficulty under S_{t-1}",
    "s0.difficulty": "difficulty under S_0",
    "loop.labels.precision_kept": "pseudo-label precision, kept",
    "loop.questions.oracle_parsable_share": "oracle-parsable share",
    "loop.stats.diversity": "diversity",
    "loop.stats.kept": "kept questions",
}
EXTRA = ["loop.visplay.stats.question_parse_rate", "loop.visplay.questions.template_entropy", "control.data.rows"]
QUESTION_CURVES = {  # the co-evolution plot's question side, per iteration t >= 1
    "loop.visplay.stats.difficulty": "VisPlay: difficulty under S_{t-1}",
    "s0.visplay.difficulty": "VisPlay: difficulty of Q_t under S_0",
    "s0.frozen.difficulty": "Q frozen: difficulty of Q_0 under S_0",
    "loop.visplay.labels.precision_kept": "VisPlay: pseudo-label precision (kept)",
}


def loop_key(key: str, arm: str) -> str:
    """`loop.stats.kept` of arm `visplay` -> `loop.visplay.stats.kept`."""
    head, _, tail = key.partition(".")
    return f"{head}.{arm}.{tail}"


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


def fmt_interval(cell: dict | None, signed: bool = False, digits: int = 3) -> str:
    """An interval cell ({mean, lo, hi}) as "0.412 [0.380, 0.445]"; "–" where there is none."""
    mean, lo, hi = (_finite((cell or {}).get(k)) for k in ("mean", "lo", "hi"))
    if mean is None:
        return "–"
    sign = "+" if signed else ""
    text = f"{mean:{sign}.{digits}f}"
    return text if lo is None or hi is None else f"{text} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"


def _seconds(value: dict | float | None) -> str:
    text = _fmt(value if isinstance(value, dict) else {"mean": value, "n": 1}, 0)
    return text if text == "–" else f"{text} s"


def _text(value) -> str:
    return "–" if value is None else str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def summarize(
    cfg,
    per_seed: list[dict],
    wall_seconds: float | None = None,
    base_seconds: float | None = None,
    gate: dict | None = None,
    gate_seconds: float | None = None,
) -> dict:
    loop = [loop_key(k, arm) for k in LOOP for arm in PSEUDO_ARMS]
    summary = aggregate(per_seed, ACCURACY + loop + EXTRA)
    final_t = max((rec["t"] for rec in summary), default=0)
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
    seconds_keys = sorted({k for run in per_seed for k in run["seconds"] if k not in ("stages", "total")})
    return {
        "config": dataclasses.asdict(cfg),
        "seeds": [run["seed"] for run in per_seed],
        "seed_set": first["seed_set"],
        "eval": first["eval"],
        "gate": gate,
        "claims": compare(per_seed) if all("eval_templates" in run for run in per_seed) else [],
        "summary": summary,
        "precision_by_confidence": {arm: pooled_precision(per_seed, arm) for arm in PSEUDO_ARMS},
        "accuracy_by_family_final": by_family,
        "seconds": {
            "wall": wall_seconds,
            "base_model": base_seconds,  # the warm-up (0 when it came from the cache)
            "gate": gate_seconds,
            "per_seed": {str(run["seed"]): run["seconds"]["total"] for run in per_seed},
            **{k: spread(run["seconds"].get(k) for run in per_seed) for k in seconds_keys},
        },
        "per_seed": per_seed,
    }


def setup_line(results: dict) -> str:
    """What was run: variant, seeds, T, budget, recipe, labeled seed set, eval set."""
    cfg, seed_set, ev = (results.get(k) or {} for k in ("config", "seed_set", "eval"))
    seeds = results.get("seeds") or []
    recipe = Path(cfg["recipe"]).name if cfg.get("recipe") else "–"
    overrides = f" with {list(cfg['overrides'])}" if cfg.get("overrides") else ""
    templates = ev.get("templates")
    return (
        f"{_text(cfg.get('variant'))} variant; {len(seeds)} seed(s) {seeds}, T = {_text(cfg.get('iterations'))}, "
        f"reasoner budget {_text(cfg.get('budget'))}x; recipe {recipe}{overrides}. "
        f"Labeled seed set: {_text(seed_set.get('images'))} images, "
        f"{_text((seed_set.get('examples') or {}).get('reasoner'))} questions "
        f"(warm-up {_text(seed_set.get('warmup_steps'))} steps). Eval: {_text(ev.get('per_template'))} balanced "
        f"questions per template on the {_text(ev.get('split'))} split "
        f"({len(templates) if templates else 'all 18'} templates), greedy. Cells: mean ± std over seeds; "
        "intervals: 95 % paired item x seed bootstrap."
    )


def blind_baseline(results: dict) -> str:
    """The blind baseline's accuracy (the seed set's most common answer per template), formatted."""
    summary = results.get("summary") or [{}]
    return _fmt(summary[0].get("prior_accuracy")) if summary else "–"


def time_line(results: dict) -> str:
    """How long it took: wall time, the base model's warm-up, the gate, and per seed each arm and the evaluation."""
    sec = results.get("seconds") or {}
    base, built = sec.get("base_model"), (results.get("seed_set") or {}).get("warmup_seconds")
    if isinstance(base, (int, float)) and isinstance(built, (int, float)) and base < built / 2:
        warmup = f"base model warm-up {_seconds(built)} when built, taken from the cache here"
    else:
        warmup = f"base model (warm-up) {_seconds(base)}"
    parts = [
        f"{name} {_seconds(sec.get(key))}"
        for key, name in (
            ("visplay", "VisPlay loop"),
            ("oracle", "oracle arm"),
            ("frozen", "frozen-questioner arm"),
            ("s0_difficulty", "S_0 scoring"),
            ("eval", "evaluation"),
        )  # fmt: skip
        if sec.get(key) is not None
    ]
    return (
        f"Wall time {_seconds(sec.get('wall'))} with {_text((results.get('config') or {}).get('jobs'))} "
        f"process(es), {warmup}, gate {_seconds(sec.get('gate'))}; per seed: {', '.join(parts) or '–'}."
    )


def _precision_cell(cell: dict | None) -> str:
    precision = _finite((cell or {}).get("mean"))
    if precision is None:
        return "–"
    return f"{fmt_interval(cell, digits=2)} (n={cell.get('n')})"


def gate_table(results: dict) -> Table | None:
    gate = results.get("gate")
    if not gate:
        return None
    choice = gate.get("choice") or {}
    rows = [
        [
            f"{cell['budget']}x",
            f"{cell['reasoner']['steps']} x {cell['reasoner']['batch']}",
            _text(cell.get("train_rows")),
            fmt_interval(
                {
                    "mean": cell.get("gain"),
                    "lo": (cell.get("gain_ci") or [None])[0],
                    "hi": (cell.get("gain_ci") or [None, None])[1],
                },
                signed=True,
            ),  # fmt: skip
            fmt_interval(cell.get("margin_gain"), signed=True),
            "yes" if _finite(cell.get("gain")) is not None and cell["gain"] >= gate["threshold"] else "no",
        ]
        for cell in sorted(gate.get("scan") or [], key=lambda c: c["budget"])
    ]
    verdict = "passed" if choice.get("passed") else "NOT passed"
    return Table(
        "gate",
        f"The gate (dev split, seed {gate.get('seed')}): oracle labels on Q0's kept questions, one iteration",
        [
            "budget",
            "steps x questions per step",
            "train rows",
            "endpoint gain vs base",
            "margin gain vs base",
            f">= {gate['threshold']}",
        ],  # fmt: skip
        rows,
        note=f"Gate {verdict}: the main run uses budget {choice.get('budget')}x.",
    )


def results_tables(results: dict) -> list[Table]:
    """Every results table, formatted: the gate, the endpoint per arm with intervals, the recovery fraction, the
    questioner's effect (VisPlay minus frozen Q0), accuracy on every template (real and swapped images), the questions
    and pseudo-labels, accuracy per family."""
    s = results.get("summary") or []
    claims = results.get("claims") or []
    arms = [arm for arm in ARMS if any(arm in (c.get("arms") or {}) for c in claims)] or list(ARMS)
    tables = [t for t in [gate_table(results)] if t is not None]
    tables.append(
        Table(
            "endpoint",
            "Primary endpoint: greedy accuracy on the image-dependent families (counts, chart reading, arithmetic)",
            ["t", "arm", "endpoint", "gain vs base", "margin (real - swapped)", "margin gain vs base"],
            [
                [
                    str(c["t"]),
                    ARM_LABELS[arm],
                    fmt_interval(cell.get("endpoint")),
                    fmt_interval(cell.get("endpoint_gain"), signed=True),
                    fmt_interval(cell.get("margin"), signed=True),
                    fmt_interval(cell.get("margin_gain"), signed=True),
                ]  # fmt: skip
                for c in claims
                if c["t"] > 0
                for arm in arms
                if (cell := (c.get("arms") or {}).get(arm))
            ],
            note="Each cell: mean over seeds and items, [95 % interval] of the paired item x seed bootstrap; gains "
            "are against the base on the same items.",
        )
    )
    tables.append(
        Table(
            "recovery",
            "Recovery fraction (arm - base) / (oracle - base) on the endpoint",
            ["t", *(ARM_LABELS[arm] for arm in PSEUDO_ARMS)],
            [
                [str(c["t"]), *(_recovery_cell((c.get("recovery") or {}).get(arm)) for arm in PSEUDO_ARMS)]
                for c in claims
                if c["t"] > 0
            ],
            note="Defined only where the oracle arm's gain is above zero with its interval (a working positive "
            "control).",
        )
    )
    if any((c.get("questioner") or {}).get("endpoint_gain") for c in claims):
        tables.append(
            Table(
                "questioner",
                "Training the questioner: VisPlay minus VisPlay with Q frozen at Q0",
                ["t", "endpoint difference", "margin difference"],
                [
                    [
                        str(c["t"]),
                        *(fmt_interval(c["questioner"].get(k), signed=True) for k in ("endpoint_gain", "margin_gain")),
                    ]
                    for c in claims
                    if c["t"] > 0 and (c.get("questioner") or {}).get("endpoint_gain")
                ],
                note="The two arms differ only in whether Q_t is trained; paired item x seed bootstrap, 95 % "
                "interval.",
            )
        )
    tables += [
        Table(
            "accuracy",
            "Greedy accuracy on every eval template",
            ["t", *(ARM_LABELS[arm] for arm in ARMS)],
            [[str(rec["t"]), *(_fmt(rec.get(f"accuracy.{arm}.greedy")) for arm in ARMS)] for rec in s],
        ),
        Table(
            "swapped",
            "Does the reasoner look at the image? Greedy accuracy with the eval images swapped between questions",
            ["t", *(ARM_LABELS[arm] for arm in ARMS)],
            [[str(rec["t"]), *(_fmt(rec.get(f"accuracy.{arm}.greedy_swapped")) for arm in ARMS)] for rec in s],
            note="Each question is shown another eval image of the same kind: accuracy that survives owes nothing to "
            f"the image. Blind baseline (the seed set's most common answer per template): {blind_baseline(results)}.",
        ),
        Table(
            "loop",
            "The questions and pseudo-labels, measured by the oracle (iteration t: questions of Q_t)",
            ["t", "arm", *LOOP.values()],
            [
                [
                    str(rec["t"]),
                    ARM_LABELS[arm],
                    *(_fmt(rec.get(loop_key(k, arm)), 1 if k.endswith(".kept") else 3) for k in LOOP),
                ]  # fmt: skip
                for rec in s
                if rec["t"] > 0
                for arm in PSEUDO_ARMS
                if any(_finite((rec.get(loop_key(k, arm)) or {}).get("mean")) is not None for k in LOOP)
            ],
            note="Difficulty is 1 - mean confidence p. Under S_{t-1} it mixes harder questions with a more confident "
            "reasoner; under the fixed S_0 it measures the questions alone.",
        ),
    ]
    for arm in PSEUDO_ARMS:
        pbc = (results.get("precision_by_confidence") or {}).get(arm) or {}
        its = sorted((t for t in pbc if pbc[t]), key=int)
        if not its:
            continue
        ps = sorted({p for t in its for p in pbc[t]}, key=float)
        tables.append(
            Table(
                f"precision-{arm}",
                f"{ARM_LABELS[arm]}: pseudo-label precision by confidence p (pooled over seeds, Wilson 95 % interval)",
                ["p", *(f"t={t}" for t in its)],
                [[f"{float(p):.3g}", *(_precision_cell(pbc[t].get(p)) for t in its)] for p in ps],
            )
        )
    fam = results.get("accuracy_by_family_final") or {}
    if fam.get("base") and s:
        tables.append(
            Table(
                "by-family",
                f"Greedy accuracy by question family at t = {s[-1]['t']}",
                ["family", *(ARM_LABELS[arm] for arm in ARMS)],
                [[f, *(_fmt((fam.get(arm) or {}).get(f)) for arm in ARMS)] for f in sorted(fam["base"])],
            )
        )
    return tables


def _recovery_cell(cell: dict | None) -> str:
    if not cell:
        return "–"
    if not cell.get("defined"):
        return f"undefined (oracle gain {fmt_interval(cell.get('oracle_gain'), signed=True)})"
    return fmt_interval(cell)


def findings(results: dict) -> list[str]:
    """The write-up's claims, computed from results.json, each with its interval."""
    claims = [c for c in results.get("claims") or [] if c["t"] > 0]
    out = []
    gate = results.get("gate")
    if gate:
        choice = gate["choice"]
        best = next((c for c in gate["scan"] if c["budget"] == choice["budget"]), {})
        ci = best.get("gain_ci") or [None, None]
        out.append(
            f"Gate {'passed' if choice['passed'] else 'not passed'}: the oracle arm's endpoint gain on the dev split "
            f"is {fmt_interval({'mean': best.get('gain'), 'lo': ci[0], 'hi': ci[1]}, signed=True)} at budget "
            f"{choice['budget']}x (threshold {gate['threshold']}; budgets scanned: {gate['budgets']})."
        )
    if not claims:
        return out
    final = claims[-1]
    arms = final.get("arms") or {}
    if "base" in arms:
        out.append(f"Base endpoint: {fmt_interval(arms['base'].get('endpoint'))}; image margin "
                   f"{fmt_interval(arms['base'].get('margin'), signed=True)}.")  # fmt: skip
    for arm in TRAINED:
        cell = arms.get(arm)
        if cell:
            out.append(
                f"{ARM_LABELS[arm]} at t = {final['t']}: endpoint gain "
                f"{fmt_interval(cell.get('endpoint_gain'), signed=True)}, margin gain "
                f"{fmt_interval(cell.get('margin_gain'), signed=True)}."
            )
    for arm in PSEUDO_ARMS:
        rec = (final.get("recovery") or {}).get(arm)
        if rec:
            out.append(f"Recovery fraction of {ARM_LABELS[arm]} at t = {final['t']}: {_recovery_cell(rec)}.")
    questioner = final.get("questioner") or {}
    if questioner.get("endpoint_gain"):
        out.append(questioner_verdict(final["t"], questioner))
    out.append(perception_verdict(final))
    return out


def _excludes_zero(cell: dict | None) -> bool:
    lo, hi = _finite((cell or {}).get("lo")), _finite((cell or {}).get("hi"))
    return lo is not None and hi is not None and (lo > 0 or hi < 0)


def questioner_verdict(t: int, questioner: dict) -> str:
    """What training the questioner adds at t: VisPlay minus the frozen-Q_0 arm, a difference only when an interval
    excludes zero."""
    gain, margin = questioner.get("endpoint_gain"), questioner.get("margin_gain")
    found = "a difference" if _excludes_zero(gain) or _excludes_zero(margin) else "no measurable difference"
    return (
        f"Training the questioner at t = {t} (VisPlay minus VisPlay, Q frozen at Q0, paired): endpoint "
        f"{fmt_interval(gain, signed=True)}, margin {fmt_interval(margin, signed=True)}: {found}."
    )


def perception_verdict(claim: dict) -> str:
    """Whether VisPlay shows a perception gain: its endpoint gain and its margin gain over the base both have
    intervals above zero."""
    cell = (claim.get("arms") or {}).get("visplay") or {}
    gain, margin = cell.get("endpoint_gain") or {}, cell.get("margin_gain") or {}
    if _finite(gain.get("lo")) is None or _finite(margin.get("lo")) is None:
        return "Perception gain of VisPlay: not measured."
    yes = gain["lo"] > 0 and margin["lo"] > 0
    return (
        f"Perception gain of VisPlay at t = {claim['t']}: {'yes' if yes else 'no'} (endpoint gain interval "
        f"{'above' if gain['lo'] > 0 else 'not above'} zero, margin gain interval "
        f"{'above' if margin['lo'] > 0 else 'not above'} zero)."
    )


def render_markdown(results: dict) -> str:
    lines = ["# VisPlay in the controlled world", "", setup_line(results), ""]
    found = findings(results)
    if found:
        lines += ["## Findings (computed from results.json)", "", *(f"- {f}" for f in found), ""]
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
    ax.set_title("questions of Q_t")
    ax = axes[1]
    for arm, style in (("visplay", "-o"), ("frozen", "-.d"), ("oracle", "--s"), ("base", ":^")):
        mean, std = series(f"accuracy.{arm}.greedy", all_t)
        ax.errorbar(all_t, mean, yerr=std, fmt=style, capsize=3, label=f"{ARM_LABELS[arm]}, greedy")
    ax.set_title("greedy accuracy on the balanced eval set")
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
    cfg,
    per_seed: list[dict],
    out: Path,
    wall_seconds: float | None = None,
    base_seconds: float | None = None,
    gate: dict | None = None,
    gate_seconds: float | None = None,
) -> dict:
    """results.json, results.md, coevolution.png and report.html in `out`: the run report of the first seed's loop
    run with the world section on top, or the world section alone when that run directory is missing."""
    from verl_ext.atomic_io import atomic_write_json, atomic_write_text
    from verl_ext.tiny.tiny_vlm import default_cache_dir

    from .experiment import REPO_ROOT, SeedPaths

    out = Path(out)
    results = summarize(cfg, per_seed, wall_seconds, base_seconds, gate, gate_seconds)
    # machine paths as placeholders, so that a results.json can be committed and compared across machines
    places = {str(out.resolve()): "<out>", str(REPO_ROOT): "<repo>"}
    places[str(Path(cfg.cache_dir or default_cache_dir()).resolve())] = "<cache>"
    results = portable_paths(results, places)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", render_markdown(results))
    plot(results, out / "coevolution.png")
    run_dir = SeedPaths(out / f"seed_{cfg.seed_list()[0]}").run_dir
    write_html_report(results, run_dir if (run_dir / "manifest.json").is_file() else None, out / "report.html")
    return results


def portable_paths(data, places: dict[str, str]):
    """`data` with every string that starts with one of the `places` prefixes rewritten to its placeholder."""
    if isinstance(data, dict):
        return {k: portable_paths(v, places) for k, v in data.items()}
    if isinstance(data, list):
        return [portable_paths(v, places) for v in data]
    if isinstance(data, str):
        for prefix, name in sorted(places.items(), key=lambda kv: -len(kv[0])):
            if data == prefix or data.startswith(prefix + "/"):
                return name + data[len(prefix) :]
    return data


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
