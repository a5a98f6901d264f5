"""What the oracle measures about one iteration of the loop, and the mean +- spread over seeds. No torch, no models.

Inputs are the loop's own artifacts (questions.parquet, the filter's all.parquet): the oracle looks at a question
only through its image id (the scene is regenerated from it) and its text, after the loop is done with it.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

from verl_ext.visplay.grading import answers_equivalent_batch

from .grammar import STATUSES, TEMPLATES, OracleResult, oracle
from .scenes import scene_for_id


def oracle_for(image_id: str, question: str | None) -> OracleResult:
    """The oracle on a question about a world image (`no_template` for a missing question or a foreign image)."""
    scene = scene_for_id(image_id)
    if scene is None or not question:
        return OracleResult("no_template", None, None)
    return oracle(scene, question)


def _equivalent(pairs: Sequence[tuple[str, str | None]]) -> list[bool]:
    """answers_equivalent(gold, pred) per pair; a missing prediction is never right."""
    asked = [(g, p) for g, p in pairs if p]
    verdicts = iter(answers_equivalent_batch(asked))
    return [bool(p) and next(verdicts) for _, p in pairs]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def template_entropy(counts: Counter) -> float | None:
    """Normalised Shannon entropy of the template distribution (1 = all templates equally often, 0 = one)."""
    total = sum(counts.values())
    if not total:
        return None
    h = -sum(c / total * math.log(c / total) for c in counts.values() if c)
    return round(h / math.log(len(TEMPLATES)), 6)


def question_metrics(questions: dict[str, list]) -> dict:
    """Oracle view of the questions Q_t wrote (columns source_image_id, question, questioner_answer of
    questions.parquet): parse rate, share inside the grammar, template use, the questioner's own answer accuracy."""
    n = len(questions["question"])
    parsed = [i for i in range(n) if questions["question"][i] is not None]
    results = {i: oracle_for(questions["source_image_id"][i], questions["question"][i]) for i in parsed}
    statuses = Counter(r.status for r in results.values())
    templates = Counter(r.template for r in results.values() if r.template is not None)
    ok = [i for i in parsed if results[i].ok]
    own = _equivalent([(results[i].answer, questions["questioner_answer"][i]) for i in ok])
    return {
        "generated": n,
        "parsed": len(parsed),
        "parse_rate": _ratio(len(parsed), n),
        "oracle_status": {s: statuses.get(s, 0) for s in STATUSES},
        "oracle_parsable_share": _ratio(len(ok), len(parsed)),  # of parsed questions: inside the grammar, answerable
        "in_grammar_share": _ratio(len(parsed) - statuses.get("no_template", 0), len(parsed)),
        "templates": dict(sorted(templates.items())),
        "distinct_templates": len(templates),
        "template_entropy": template_entropy(templates),
        "questioner_answer_accuracy": _ratio(sum(own), len(own)),
    }


def label_metrics(labels: dict[str, list], band: tuple[float, float]) -> dict:
    """Pseudo-label precision against the oracle (columns of the filter's all.parquet): over the kept questions, over
    every labelled question, and per confidence value p = k/m (the band filter's view of reliability)."""
    n = len(labels["question"])
    labelled = [i for i in range(n) if labels["question"][i] is not None and labels["pseudo_label"][i] is not None]
    results = {i: oracle_for(labels["source_image_id"][i], labels["question"][i]) for i in labelled}
    ok = [i for i in labelled if results[i].ok]
    right = dict(zip(ok, _equivalent([(results[i].answer, labels["pseudo_label"][i]) for i in ok]), strict=True))
    kept = [i for i in labelled if labels["filter_reason"][i] == "kept"]
    kept_ok = [i for i in kept if i in right]
    by_p: dict[str, dict] = {}
    for p in sorted({round(float(labels["confidence"][i]), 6) for i in ok}):
        idx = [i for i in ok if round(float(labels["confidence"][i]), 6) == p]
        by_p[f"{p:g}"] = {
            "n": len(idx),
            "precision": _ratio(sum(right[i] for i in idx), len(idx)),
            "in_band": band[0] <= p <= band[1],
        }
    return {
        "labelled": len(labelled),
        "labelled_oracle_ok": len(ok),
        "kept": len(kept),
        "kept_oracle_ok": len(kept_ok),
        "precision_kept": _ratio(sum(right[i] for i in kept_ok), len(kept_ok)),
        "precision_all": _ratio(sum(right.values()), len(right)),
        "precision_by_confidence": by_p,
    }


def spread(values: Iterable[float | None]) -> dict:
    """mean, sample std, min, max and n of the values that are not None."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": round(statistics.fmean(vals), 6),
        "std": round(statistics.stdev(vals), 6) if len(vals) > 1 else 0.0,
        "min": round(min(vals), 6),
        "max": round(max(vals), 6),
        "n": len(vals),
    }


def dig(data: dict, path: str):
    """`data["a"]["b"]` for path "a.b"; None where any key is missing."""
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def aggregate(per_seed: list[dict], metrics: Sequence[str]) -> list[dict]:
    """Per iteration (t = 0..T), `spread` over seeds of each dotted metric path of the per-iteration records."""
    iterations = sorted({rec["t"] for run in per_seed for rec in run["iterations"]})
    out = []
    for t in iterations:
        recs = [rec for run in per_seed for rec in run["iterations"] if rec["t"] == t]
        out.append({"t": t, **{m: spread(dig(rec, m) for rec in recs) for m in metrics}})
    return out


def pooled_precision_by_confidence(per_seed: list[dict]) -> dict[int, dict[str, dict]]:
    """Per iteration, pseudo-label precision per confidence value, pooled over seeds (counts add up)."""
    out: dict[int, dict[str, dict]] = {}
    for run in per_seed:
        for rec in run["iterations"]:
            table = dig(rec, "loop.labels.precision_by_confidence") or {}
            slot = out.setdefault(rec["t"], {})
            for p, cell in table.items():
                agg = slot.setdefault(p, {"n": 0, "right": 0.0, "in_band": cell["in_band"]})
                agg["n"] += cell["n"]
                agg["right"] += (cell["precision"] or 0.0) * cell["n"]
    for slot in out.values():
        for cell in slot.values():
            cell["precision"] = _ratio(cell.pop("right"), cell["n"])
    return out
