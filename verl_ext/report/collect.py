"""Everything the run report shows, read from a run directory: per-iteration stats, training curves, evaluation
results and a gallery sample. Tolerant by design: a part that is missing (an unfinished iteration, a pruned
checkpoint, no evaluation yet) is left empty, never an error.

Training curves come from `iter_t/<role>/metrics.jsonl` (local backend, one JSON object per logging step) or from
verl's console lines `step:N - key:value - ...` in `logs/iter_t/<role>.log` (verl backend).
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from verl_ext.evolve.stages import RunLayout

ROLES = ("questioner", "reasoner")
# Training metrics worth a curve, by priority (verl's names, TRL's names, ours); at most MAX_CURVES per role.
CURVE_KEYS = (
    "reward",
    "critic/score/mean",
    "critic/rewards/mean",
    "visplay/accuracy",
    "visplay/format",
    "visplay/confidence",
    "visplay/uncertainty",
    "visplay/penalty",
    "visplay/parse_rate",
)
MAX_CURVES = 6
THUMB_SIDE = 320
_VERL_STEP = re.compile(r"step:(\d+)\s+-\s+(.*)$")


@dataclass
class GalleryItem:
    iteration: int
    id: str
    image_uri: str | None
    question: str | None
    question_type: str | None
    raw_output: str | None
    pseudo_label: str | None
    confidence: float | None
    num_samples: int
    num_unparsed: int | None
    votes: list[tuple[str, int]]  # (answer, count), most common first; "∅" = no parsable answer
    reason: str  # kept | too_easy | too_hard | no_answer | unparsable | too_long

    @property
    def kept(self) -> bool:
        return self.reason == "kept"


@dataclass
class RunData:
    run_dir: Path
    recipe: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    iterations: list[dict] = field(default_factory=list)  # filter stats.json per finished iteration
    curves: dict[str, dict[str, list[tuple[int, int, float]]]] = field(default_factory=dict)  # role -> key -> pts
    eval_results: dict | None = None
    gallery: list[GalleryItem] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.recipe.get("name") or self.manifest.get("recipe") or self.run_dir.name)

    @property
    def total_iterations(self) -> int:
        return int(self.manifest.get("iterations") or self.recipe.get("iterations") or len(self.iterations))


def collect(
    run_dir: str | Path, eval_dir: str | Path | None = None, gallery_per_iteration: int = 12, seed: int = 0
) -> RunData:
    from verl_ext.eval.runner import read_run

    run_dir = Path(run_dir).resolve()
    recipe, manifest = read_run(run_dir)
    data = RunData(run_dir, recipe, manifest)
    layout = RunLayout(run_dir)
    total = data.total_iterations
    found = sorted(int(p.name[5:]) for p in run_dir.glob("iter_*") if p.name[5:].isdigit() and int(p.name[5:]) > 0)
    for t in found:
        stats_path = layout.output_dir(t, "filter") / "stats.json"
        if stats_path.is_file():
            data.iterations.append(json.loads(stats_path.read_text()))
    data.curves = {role: training_curves(run_dir, role, max(total, len(data.iterations))) for role in ROLES}
    results = Path(eval_dir or run_dir / "eval") / "results.json"
    if results.is_file():
        data.eval_results = json.loads(results.read_text())
    for stats in data.iterations:
        data.gallery.extend(gallery_sample(run_dir, stats["iteration"], gallery_per_iteration, seed))
    return data


# --------------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------------


def _read_metrics_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def parse_verl_console(text: str) -> list[dict]:
    """verl's console logger lines (`step:3 - critic/score/mean:0.41 - ...`, maybe behind a Ray prefix)."""
    rows = []
    for line in text.splitlines():
        m = _VERL_STEP.search(line)
        if not m:
            continue
        row: dict = {"step": int(m.group(1))}
        for part in m.group(2).split(" - "):
            key, sep, value = part.rpartition(":")
            if not sep:
                continue
            try:
                row[key.strip()] = float(value)
            except ValueError:
                continue
        rows.append(row)
    return rows


def training_curves(run_dir: Path, role: str, iterations: int) -> dict[str, list[tuple[int, int, float]]]:
    """key -> [(iteration, step, value)] for the chosen metrics of one role over all iterations."""
    layout = RunLayout(run_dir)
    rows_by_it: dict[int, list[dict]] = {}
    for t in range(1, iterations + 1):
        metrics = layout.output_dir(t, role) / "metrics.jsonl"
        work_metrics = layout.work_dir(t, role) / "metrics.jsonl"  # a stage still training
        log = layout.log_path(t, role)
        if metrics.is_file():
            rows = _read_metrics_jsonl(metrics)
        elif work_metrics.is_file():
            rows = _read_metrics_jsonl(work_metrics)
        elif log.is_file():
            rows = parse_verl_console(log.read_text(errors="replace"))
        else:
            rows = []
        if rows:
            rows_by_it[t] = rows
    present = Counter(k for rows in rows_by_it.values() for r in rows for k in r)
    keys = [k for k in CURVE_KEYS if present.get(k)]
    keys += sorted(k for k in present if k.startswith("visplay/") and k not in keys)
    if "reward" in keys:  # TRL's `reward` and verl's critic/score are the same curve under two names
        keys = [k for k in keys if k not in ("critic/score/mean", "critic/rewards/mean")]
    curves: dict[str, list[tuple[int, int, float]]] = {}
    for key in keys[:MAX_CURVES]:
        pts = [
            (t, int(r["step"]), float(r[key]))
            for t, rows in sorted(rows_by_it.items())
            for r in rows
            if isinstance(r.get(key), int | float)
        ]
        if pts:
            curves[key] = pts
    return curves


# --------------------------------------------------------------------------------------------------
# Gallery
# --------------------------------------------------------------------------------------------------


def image_data_uri(cell, side: int = THUMB_SIDE) -> str | None:
    """A thumbnail (longest side <= `side`) as a data URI: PNG for small images, JPEG for photos."""
    from verl_ext.image_io import ImageError, decode_rgb

    try:
        image = decode_rgb(cell)  # the decoder the stages used: the thumbnail shows what the model saw
    except ImageError:
        return None
    image.thumbnail((side, side))
    buf = io.BytesIO()
    if image.width * image.height <= 128 * 128:
        image.save(buf, format="PNG")
        mime = "image/png"
    else:
        image.save(buf, format="JPEG", quality=80)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"


def _pick_ids(ids: list[str], reasons: list[str], k: int, seed: int) -> list[str]:
    """Up to k ids, half kept, the rest spread round-robin over the drop reasons; seeded."""
    rng = random.Random(seed)
    by_reason: dict[str, list[str]] = {}
    for i, r in zip(ids, reasons, strict=True):
        by_reason.setdefault(r or "unknown", []).append(i)
    for lst in by_reason.values():
        rng.shuffle(lst)
    kept = by_reason.pop("kept", [])
    picked = kept[: (k + 1) // 2]
    dropped_lists = [by_reason[r] for r in sorted(by_reason)]
    while len(picked) < k and any(dropped_lists):
        for lst in dropped_lists:
            if lst and len(picked) < k:
                picked.append(lst.pop())
    picked += kept[(k + 1) // 2 : (k + 1) // 2 + (k - len(picked))]  # too few dropped: more kept ones
    return picked


def _votes(answers) -> list[tuple[str, int]]:
    if answers is None:
        return []
    counts = Counter("∅" if a is None or not str(a).strip() else str(a).strip() for a in answers)
    return counts.most_common()


def gallery_sample(run_dir: Path, iteration: int, k: int, seed: int) -> list[GalleryItem]:
    import pyarrow.parquet as pq

    if k <= 0:
        return []
    layout = RunLayout(run_dir)
    all_path = layout.output(iteration, "filter", "all")
    labels_path = layout.output(iteration, "pseudo_label", "labels")
    questions_path = layout.output(iteration, "generate", "questions")
    if not all_path.is_file():
        return []
    light = pq.read_table(all_path, columns=["id", "filter_reason"]).to_pydict()
    ids = _pick_ids(light["id"], light["filter_reason"], k, seed + iteration)
    if not ids:
        return []
    reason_of = dict(zip(light["id"], light["filter_reason"], strict=True))
    rows: dict[str, dict] = {}
    if labels_path.is_file():
        names = set(pq.read_schema(labels_path).names)
        wanted = [
            c
            for c in (
                "id",
                "image",
                "question",
                "question_type",
                "pseudo_label",
                "confidence",
                "num_samples",
                "num_unparsed",
                "answers",
            )
            if c in names
        ]
        for r in pq.read_table(labels_path, columns=wanted, filters=[("id", "in", ids)]).to_pylist():
            rows[r["id"]] = r
    raw: dict[str, str] = {}
    if questions_path.is_file() and "raw_output" in pq.read_schema(questions_path).names:
        for r in pq.read_table(questions_path, columns=["id", "raw_output"], filters=[("id", "in", ids)]).to_pylist():
            raw[r["id"]] = r["raw_output"]
    items = []
    for i in ids:
        r = rows.get(i, {})
        items.append(
            GalleryItem(
                iteration=iteration,
                id=i,
                image_uri=image_data_uri(r["image"]) if r.get("image") is not None else None,
                question=r.get("question"),
                question_type=r.get("question_type"),
                raw_output=raw.get(i),
                pseudo_label=r.get("pseudo_label"),
                confidence=r.get("confidence"),
                num_samples=int(r.get("num_samples") or 0),
                num_unparsed=r.get("num_unparsed"),
                votes=_votes(r.get("answers")),
                reason=reason_of.get(i) or "unknown",
            )
        )
    return items
