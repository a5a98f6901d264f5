"""The resumable units of the offline stages: how many fragments a stage splits into, fixed on its first start.

A fragment is a contiguous range of the stage's items (images for generation, questions for pseudo-labelling) whose
output is one parquet file, `shards/shard-<k>.parquet`, written atomically. Enough fragments that every engine gets
several (work is handed out one fragment at a time, so fast engines take more), and never more than items. The count
is written to `shards/plan.json` before any fragment runs: a restart with another number of engines keeps the ranges
its finished fragments were cut from, so it skips them and writes no row twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from verl_ext.atomic_io import atomic_write_json

FRAGMENTS_PER_ACTOR = 4  # dynamic balance: an engine that finishes early takes another fragment
PLAN_FILE = "plan.json"
SHARD_DIR = "shards"


def num_fragments(items: int, shards: int, actors: int) -> int:
    """At least `shards` (the recipe's) and FRAGMENTS_PER_ACTOR per engine, at most one per item."""
    return max(1, min(items, max(shards, FRAGMENTS_PER_ACTOR * actors)))


def fragment_count(out_dir: str | Path, stage: str, items: int, shards: int, actors: int) -> int:
    """The stage's fragment count: the one recorded in `out_dir/shards/plan.json`, else `num_fragments` (recorded)."""
    path = Path(out_dir) / SHARD_DIR / PLAN_FILE
    if path.is_file():
        plan = json.loads(path.read_text())
        if plan.get("stage") == stage and plan.get("items") == items:
            return int(plan["fragments"])
        raise SystemExit(
            f"{path}: planned for {plan.get('items')} {plan.get('stage')} items, this run has {items} {stage} items; "
            "the stage's inputs changed under its work dir (remove the work dir to start the stage over)"
        )
    n = num_fragments(items, shards, actors)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"stage": stage, "items": items, "fragments": n})
    return n


def remove_stale_temps(out_dir: str | Path) -> int:
    """Delete temp files a killed writer left in the shards dir (finished fragments are renamed into place)."""
    stale = list((Path(out_dir) / SHARD_DIR).glob(".shard-*.parquet.tmp-*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
