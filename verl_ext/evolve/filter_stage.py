"""The confidence-band filter stage and the per-iteration statistics, as plain parquet-in / parquet+JSON-out code.

It runs in the loop process for every backend (no torch, no verl). The image column is streamed batch by batch, never
loaded whole: pseudo-label files hold one encoded image per question.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.atomic_io import atomic_write_json
from verl_ext.visplay._numbers import finite_float
from verl_ext.visplay.records import FILTER_REASONS, PSEUDO_LABEL_COLUMNS, missing_columns

from .recipe import FilterConfig, StatsConfig

LIGHT_COLUMNS = [c for c in PSEUDO_LABEL_COLUMNS if c != "image"]
OPTIONAL_LABEL_COLUMNS = ("num_unparsed",)  # written by our pseudo-labelling stage; absent in hand-made files


def _read_light(path: str | Path, wanted: list[str]) -> dict[str, list]:
    """The named columns of a parquet file (those present), as Python lists, without the image column."""
    schema = pq.read_schema(path)
    cols = [c for c in wanted if c in schema.names]
    return pq.read_table(path, columns=cols).to_pydict()


def _norm(text) -> str:
    return " ".join(str(text).strip().lower().split()) if text is not None else ""


def run_filter(
    labels_path: str | Path,
    questions_path: str | Path,
    out_dir: str | Path,
    filter_cfg: FilterConfig,
    stats_cfg: StatsConfig,
    *,
    iteration: int,
    seed: int,
    lam: float = 1.0,
    cluster_threshold: float = 0.5,
) -> dict:
    """Band-filter `labels_path` into `out_dir`/{train,all}.parquet, write `out_dir`/stats.json, return the stats."""
    from verl_ext.visplay import band_filter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = pq.read_schema(labels_path)
    missing = missing_columns(schema.names, [c for c in PSEUDO_LABEL_COLUMNS if c != "filter_reason"])
    if missing:
        raise ValueError(f"{labels_path}: missing columns {missing} (expected records.PSEUDO_LABEL_COLUMNS)")

    light = _read_light(labels_path, LIGHT_COLUMNS + list(OPTIONAL_LABEL_COLUMNS))
    n = len(light["id"])
    records = [
        {
            "question": light["question"][i],
            "pseudo_label": light["pseudo_label"][i],
            "confidence": light["confidence"][i],
        }
        for i in range(n)
    ]
    result = band_filter(records, filter_cfg.low, filter_cfg.high)
    reasons = list(result.reasons)
    if len(reasons) != n:
        raise RuntimeError(f"band_filter returned {len(reasons)} reasons for {n} records")
    unknown = set(reasons) - set(FILTER_REASONS)
    if unknown:
        raise RuntimeError(f"band_filter returned unknown reasons {sorted(unknown)}")
    keep_mask = [r == "kept" for r in reasons]

    # all.parquet: every record with its reason, without images (for analysis).
    light_out = {c: light[c] for c in LIGHT_COLUMNS if c in light}
    light_out["filter_reason"] = reasons
    pq.write_table(pa.table(light_out), out_dir / "all.parquet", write_page_checksum=True)

    # train.parquet: kept records with every column, image included, streamed in batches.
    _write_kept(labels_path, out_dir / "train.parquet", keep_mask, reasons)

    stats = compute_stats(
        light,
        reasons,
        questions_path=questions_path,
        stats_cfg=stats_cfg,
        iteration=iteration,
        seed=seed,
        band=(filter_cfg.low, filter_cfg.high),
        lam=lam,
        cluster_threshold=cluster_threshold,
    )
    atomic_write_json(out_dir / "stats.json", stats)
    return stats


def _write_kept(src: str | Path, dst: Path, keep_mask: list[bool], reasons: list[str]) -> int:
    pf = pq.ParquetFile(src)
    out_schema = pf.schema_arrow
    if "filter_reason" in out_schema.names:
        out_schema = out_schema.remove(out_schema.get_field_index("filter_reason"))
    out_schema = out_schema.append(pa.field("filter_reason", pa.string()))
    kept = 0
    offset = 0
    with pq.ParquetWriter(dst, out_schema, write_page_checksum=True) as writer:
        for batch in pf.iter_batches(batch_size=256):
            mask = pa.array(keep_mask[offset : offset + batch.num_rows], type=pa.bool_())
            offset += batch.num_rows
            table = pa.Table.from_batches([batch])
            if "filter_reason" in table.column_names:
                table = table.drop(["filter_reason"])
            table = table.filter(mask)
            table = table.append_column("filter_reason", pa.array(["kept"] * table.num_rows, type=pa.string()))
            if table.num_rows:
                writer.write_table(table.cast(out_schema))
            kept += table.num_rows
    return kept


def compute_stats(
    light: dict[str, list],
    reasons: list[str],
    *,
    questions_path: str | Path | None,
    stats_cfg: StatsConfig,
    iteration: int,
    seed: int,
    band: tuple[float, float],
    lam: float,
    cluster_threshold: float,
) -> dict:
    """Per-iteration statistics (JSON-able): counts per stage, parse rates, confidence histogram, filter reasons,
    question diversity."""
    n = len(reasons)
    stats: dict = {"iteration": iteration, "band": {"low": band[0], "high": band[1]}}

    # How much each stage had.
    counts = {"labelled_records": n}
    if questions_path is not None and Path(questions_path).exists():
        q = _read_light(questions_path, ["id", "source_image_id", "question"])
        counts["images"] = len(set(q.get("source_image_id", [])))
        counts["questions_generated"] = len(q["id"])
        counts["questions_parsed"] = sum(x is not None for x in q["question"])
        stats["question_parse_rate"] = _ratio(counts["questions_parsed"], counts["questions_generated"])
    nsamp = light.get("num_samples", [0] * n)
    labelled = [i for i in range(n) if light["question"][i] is not None and (nsamp[i] or 0) > 0]
    counts["questions_labelled"] = len(labelled)
    counts["with_pseudo_label"] = sum(light["pseudo_label"][i] is not None for i in labelled)
    counts["kept"] = sum(r == "kept" for r in reasons)
    stats["counts"] = counts

    if "num_unparsed" in light:
        total = sum(nsamp[i] or 0 for i in labelled)
        unparsed = sum(light["num_unparsed"][i] or 0 for i in labelled)
        stats["answer_parse_rate"] = _ratio(total - unparsed, total)

    # Question types of the parsed questions.
    stats["question_types"] = dict(Counter(light["question_type"][i] or "unknown" for i in labelled))

    # Confidence histogram over questions that received answers.
    # rule: a confidence that is not a finite number (NaN, inf: no usable vote) is no answer, here as in the filter
    conf = [p for i in labelled if (p := finite_float(light["confidence"][i])) is not None]
    stats["confidence"] = _histogram(conf, stats_cfg.histogram_bins)
    stats["difficulty"] = None if not conf else round(1.0 - sum(conf) / len(conf), 6)  # 1 - mean p (paper's plot)

    # Filter reasons.
    reason_counts = Counter(reasons)
    stats["filter"] = {
        "counts": {r: reason_counts.get(r, 0) for r in FILTER_REASONS},
        "fractions": {r: _ratio(reason_counts.get(r, 0), n) for r in FILTER_REASONS},
        "kept_fraction": _ratio(reason_counts.get("kept", 0), n),
    }

    # Diversity of the parsed questions (BLEU clustering, on a seeded sample).
    questions = [light["question"][i] for i in labelled]
    stats["diversity"] = question_diversity(questions, stats_cfg.diversity_sample, seed, lam, cluster_threshold)
    return stats


def _ratio(a: int | float, b: int | float) -> float | None:
    return None if not b else round(a / b, 6)


def _histogram(values: list[float], bins: int) -> dict:
    counts = [0] * bins
    for v in values:
        idx = min(int(math.floor(v * bins)), bins - 1) if v >= 0 else 0
        counts[idx] += 1
    exact = Counter(round(v, 6) for v in values)
    return {
        "n": len(values),
        "mean": None if not values else round(sum(values) / len(values), 6),
        "edges": [round(i / bins, 6) for i in range(bins + 1)],
        "counts": counts,
        "values": {f"{k:g}": exact[k] for k in sorted(exact)},  # p takes the values k/m: exact counts per value
    }


def question_diversity(questions: list[str], sample: int, seed: int, lam: float, threshold: float) -> dict:
    """Diversity of a seeded sample of questions under the questioner reward's own clustering (1 - BLEU, average
    linkage): number of clusters, their share of the sample, and the mean repetition penalty lambda * |cluster| / B."""
    from verl_ext.visplay.diversity import cluster_labels

    if len(questions) < 2:
        return {"sampled": len(questions), "num_clusters": None, "unique_fraction": None, "mean_penalty": None}
    rng = random.Random(seed)
    picked = questions if len(questions) <= sample else rng.sample(questions, sample)
    b = len(picked)
    labels = cluster_labels(picked, threshold).tolist()
    sizes = Counter(labels)
    penalties = [sizes[label] / b for label in labels]  # = visplay.repetition_penalty(picked), without a 2nd BLEU pass
    num_clusters = len(sizes)
    return {
        "sampled": b,
        "num_clusters": num_clusters,
        "unique_fraction": round(num_clusters / b, 6),
        "largest_cluster": max(sizes.values()),
        "mean_penalty": round(lam * sum(penalties) / b, 6),
    }


def write_run_stats(per_iteration: list[dict], path: Path) -> Path | None:
    """Run-level stats.json (one entry per finished iteration) and, when matplotlib is installed, stats.png."""
    atomic_write_json(path, {"iterations": per_iteration})
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    def series(get):
        out = []
        for s in per_iteration:
            try:
                value = get(s)
            except (KeyError, TypeError):
                value = None
            out.append(float("nan") if value is None else value)
        return out

    its = [s["iteration"] for s in per_iteration]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(its, series(lambda s: s["difficulty"]), marker="o", label="difficulty (1 - mean p)")
    axes[0].plot(its, series(lambda s: s["filter"]["kept_fraction"]), marker="o", label="kept fraction")
    axes[0].plot(its, series(lambda s: s["question_parse_rate"]), marker="o", label="question parse rate")
    axes[0].set_title("questions")
    axes[1].plot(its, series(lambda s: s["diversity"]["unique_fraction"]), marker="o", label="clusters / questions")
    axes[1].set_title("diversity")
    for ax in axes[:2]:
        ax.set_xlabel("iteration")
        ax.set_xticks(its)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    for s in per_iteration:
        h = s["confidence"]
        centers = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:], strict=True)]
        axes[2].plot(centers, h["counts"], drawstyle="steps-mid", label=f"t={s['iteration']}")
    axes[2].set_title("confidence p of the pseudo-labels")
    axes[2].set_xlabel("p")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    png = path.with_suffix(".png")
    tmp = png.with_name(f".{png.name}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(png)
    return png


def load_stats(path: Path) -> dict:
    return json.loads(Path(path).read_text())
