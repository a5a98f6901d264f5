"""Offline generation / pseudo-labelling with the HF engine on the tiny VLM (in-process runner): schemas, provenance,
per-fragment resume, and per-request seeds that make a request's samples independent of its batch."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.inference import offline as infer
from verl_ext.visplay.records import PSEUDO_LABEL_COLUMNS, QUESTION_COLUMNS

pytestmark = pytest.mark.slow  # loads the tiny model and imports verl's dataset module (~20 s on 2 busy cores)

SMALL = [
    "--runner",
    "inprocess",
    "--engine",
    "hf",
    "--max-new-tokens",
    "8",
    "--min-pixels",
    "3136",
    "--max-pixels",
    "12544",
    "--iteration",
    "1",
]


def test_split_and_spread():
    assert infer.split(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert infer.split(2, 8) == [(0, 1), (1, 2)]
    assert infer.questions_per_image(3, 8) == [3, 3, 2]


def test_generate_resumes_per_shard_and_pseudo_label(tiny_vlm_path, image_parquet, tmp_path):
    out = tmp_path / "gen"
    argv = ["generate", "--model", str(tiny_vlm_path), "--images", str(image_parquet), "--out-dir", str(out),
            "--num-questions", "10", "--shards", "2", *SMALL]  # fmt: skip
    assert infer.main(argv) == 0
    first = pq.read_table(out / "questions.parquet")
    assert first.column_names[: len(QUESTION_COLUMNS)] == list(QUESTION_COLUMNS)
    ids = first.column("id").to_pylist()
    assert len(ids) == 10 and len(set(ids)) == 10  # 8 images: 2 of them get a second question
    # 4 fragments for 1 engine (FRAGMENTS_PER_ACTOR), contiguous and none empty
    shards = first.column("shard").to_pylist()
    assert shards == sorted(shards) and set(shards) == {0, 1, 2, 3}
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["rows"] == 10 and prov["fragments"] == 4 and prov["runner"] == "inprocess"

    # A restart redoes only the missing fragment, and with its requests' own seeds gives the same rows again.
    shard0 = out / "shards/shard-00000.parquet"
    mtime = shard0.stat().st_mtime_ns
    (out / "shards/shard-00002.parquet").unlink()
    (out / "questions.parquet").unlink()
    assert infer.main(argv) == 0
    assert shard0.stat().st_mtime_ns == mtime
    assert pq.read_table(out / "questions.parquet").equals(first)

    # Pseudo-labels: parsed questions get m samples and a vote; unparsable rows pass through unlabelled.
    q = first.to_pydict()
    q["question"] = ["How many circles are there?", None] * 5
    q["question_type"] = ["numerical", None] * 5
    pq.write_table(pa.table(q), tmp_path / "q.parquet")
    labels_dir = tmp_path / "pl"
    argv = ["pseudo-label", "--model", str(tiny_vlm_path), "--questions", str(tmp_path / "q.parquet"),
            "--out-dir", str(labels_dir), "--m", "3", "--shards", "2", "--top-k", "40", *SMALL]  # fmt: skip
    assert infer.main(argv) == 0
    labels = pq.read_table(labels_dir / "labels.parquet")
    assert labels.column_names[: len(PSEUDO_LABEL_COLUMNS)] == list(PSEUDO_LABEL_COLUMNS)
    rows = labels.to_pydict()
    assert rows["id"] == ids
    assert rows["num_samples"] == [3, 0] * 5
    assert all(len(a) == 3 for a in rows["answers"][::2]) and rows["answers"][1::2] == [None] * 5
    assert all(c is not None and 0.0 <= c <= 1.0 for c in rows["confidence"][::2])
    assert rows["pseudo_label"][1::2] == [None] * 5


def test_a_requests_samples_do_not_depend_on_its_batch(tiny_vlm_path, synthetic_images):
    from verl_ext.inference.engines import HFEngine, Request, Sampling

    requests = [Request("Ask a question" + " please" * i, image) for i, (image, _) in enumerate(synthetic_images[:4])]
    seeds = [11, 12, 13, 14]
    sampling = Sampling(n=3, temperature=1.0, top_p=0.95, top_k=40, max_new_tokens=12)
    engine = HFEngine(str(tiny_vlm_path), batch_size=4)
    together = engine.sample(requests, sampling, seeds)  # one padded batch of 4 x 3 rows
    engine.batch_size = 1
    alone = engine.sample(requests, sampling, seeds)
    assert together == alone
    assert engine.sample(requests[2:], sampling, seeds[2:]) == together[2:]  # other neighbours, same texts
    assert len({t for texts in together for t in texts}) > 4  # sampled, not greedy: the samples differ
    assert engine.sample(requests[:1], sampling, [99]) != together[:1]  # and follow the seed
