"""The benchmark registry and loaders on the test kit's benchmark-shaped fixtures: every benchmark's own answer
format becomes the right item (question with options, gold, answer type), from parquet, JSON releases and the
`datasets` code path."""

import io

import pytest
from PIL import Image

from verl_ext.eval.benchmarks import BENCHMARKS, DEFAULT_BENCHMARKS, Benchmark, get_benchmark, register_benchmark
from verl_ext.eval.data import DataError, DataSource, load_items, load_rows, resolve_image
from verl_ext.tiny.benchmarks import (
    BENCHMARK_NAMES,
    SPLITS,
    benchmark_rows,
    write_benchmark_folder,
    write_benchmark_suite,
)

PAPER_BENCHMARKS = {
    "mmvet",
    "mmmu",
    "realworldqa",
    "visnumbench",
    "mathverse",
    "mathvision",
    "hallusionbench",
    "mmstar",
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return write_benchmark_suite(tmp_path_factory.mktemp("bench"), n=4)


def _items(suite, name, **kw):
    spec = get_benchmark(name)
    return load_items(spec, DataSource(name, str(suite[name]), spec.split, spec.hf_config, **kw))


def _open(cell) -> Image.Image:
    return Image.open(io.BytesIO(cell) if isinstance(cell, bytes) else cell)


def test_registry_has_the_papers_benchmarks_and_refuses_duplicates():
    assert set(DEFAULT_BENCHMARKS) == PAPER_BENCHMARKS == set(BENCHMARK_NAMES)
    assert set(SPLITS) == PAPER_BENCHMARKS
    for name in DEFAULT_BENCHMARKS:
        spec = BENCHMARKS[name]
        assert spec.hf_path and "/" in spec.hf_path and spec.judge_mode in ("binary", "score")
        assert spec.split == SPLITS[name] or spec.split is None  # the fixtures use the registry's splits
    with pytest.raises(ValueError, match="already registered"):
        register_benchmark(Benchmark("mmstar", "MMStar", "x/y", "val", BENCHMARKS["mmstar"].adapter))
    with pytest.raises(KeyError, match="registered: mmvet, mmmu"):
        get_benchmark("mathvista")


@pytest.mark.parametrize("name", sorted(PAPER_BENCHMARKS))
def test_every_fixture_loads_with_images(suite, name):
    items, summary = _items(suite, name)
    assert summary == {"rows": 4, "items": 4, "skipped": 0}
    assert len({it.id for it in items}) == 4
    for it in items:
        assert it.benchmark == name and it.question and it.answer and it.images
        for cell in it.images:
            assert _open(cell).size == (64, 64)
        if it.answer_type == "choice":
            assert it.answer in (it.choices or {}) or it.choices is None
            assert "letter" in it.question  # the answer-format hint (MathVerse: its own CoT query says so)


def test_answer_formats_per_benchmark(suite):
    rows = {name: benchmark_rows(name) for name in BENCHMARK_NAMES}
    items = {name: _items(suite, name)[0] for name in BENCHMARK_NAMES}

    # MM-Vet: free-form, <OR>/<AND> kept for the scorer, judged with a 0..1 grade
    assert [it.answer_type for it in items["mmvet"]] == ["text"] * 4
    assert "<OR>" in items["mmvet"][1].answer and "<AND>" in items["mmvet"][2].answer
    assert get_benchmark("mmvet").judge_mode == "score"

    # MMMU: options stored as a Python-list string; an open question; two images in one question
    mc, open_q, two = items["mmmu"][0], items["mmmu"][1], items["mmmu"][2]
    assert mc.answer_type == "choice" and mc.choices == dict(
        zip("ABCD", eval(rows["mmmu"][0]["options"]), strict=True)
    )
    assert "A. " in mc.question and "<image 1>" not in mc.question and "[image 1]" in mc.question
    assert open_q.answer_type == "text" and open_q.choices is None
    assert len(two.images) == 2 and "side by side" in two.question

    # RealWorldQA: its "answer directly" instruction is dropped (the reasoner reasons first); letters and numbers
    rw = items["realworldqa"]
    assert all("Please answer directly" not in it.question for it in rw)
    assert rw[0].answer_type == "choice" and rw[0].choices["A"]
    assert rw[2].answer_type == "math" and rw[2].answer == rows["realworldqa"][2]["answer"]

    # VisNumBench: "(a) 4 (b) 5 ..." options, gold "(b) 5" -> "B"
    vn = items["visnumbench"][1]
    assert vn.answer == rows["visnumbench"][1]["answer"][1].upper()
    assert " ".join(f"({k.lower()}) {v}" for k, v in vn.choices.items()) == rows["visnumbench"][1]["option"]
    assert vn.choices[vn.answer] == rows["visnumbench"][1]["answer"].split(" ", 1)[1]

    # MathVerse: multi-choice (letters parsed from "Choices:") and free-form; the CoT query is the prompt
    mv = items["mathverse"]
    assert mv[0].answer_type == "choice" and set(mv[0].choices) == set("ABCD")
    assert mv[1].answer_type == "math" and mv[1].question.startswith("According to the question")
    assert mv[1].judge_question == rows["mathverse"][1]["question_for_eval"]

    # MATH-Vision: options list or none; the pixels come from decoded_image, not the release path
    mvis = items["mathvision"]
    assert mvis[0].answer_type == "choice" and mvis[1].answer_type == "math" and "<image1>" not in mvis[0].question

    # HallusionBench: gt_answer "1"/"0" -> yes/no
    hb = items["hallusionbench"]
    assert [it.answer for it in hb] == ["yes" if r["gt_answer"] == "1" else "no" for r in rows["hallusionbench"]]
    assert all(it.answer_type == "yesno" and "yes or no" in it.question for it in hb)

    # MMStar: "Options: A: x, B: y" inside the question
    ms = items["mmstar"][0]
    stated = rows["mmstar"][0]["question"].split("Options: ", 1)[1]
    assert list(ms.choices) == list("ABCD") and ", ".join(f"{k}: {v}" for k, v in ms.choices.items()) == stated


def test_release_folders_resolve_relative_image_paths(tmp_path):
    vn = write_benchmark_folder(tmp_path / "VisNumBench", "visnumbench")
    items, _ = load_items(get_benchmark("visnumbench"), DataSource("visnumbench", str(vn), None))
    assert len(items) == 4 and all(isinstance(it.images[0], str) for it in items)
    assert _open(items[0].images[0]).size == (64, 64) and items[0].answer in "ABCD"

    mv = write_benchmark_folder(tmp_path / "MathVision", "mathvision")
    rows, base = load_rows(str(mv), "testmini")
    assert base == mv and rows[0]["image"] == "images/1.png"
    items, _ = load_items(get_benchmark("mathvision"), DataSource("mathvision", str(mv), "testmini"))
    assert _open(items[0].images[0]).size == (64, 64)


def test_limit_duplicates_and_bad_sources(suite, tmp_path):
    items, summary = _items(suite, "mmstar", limit=2)
    assert len(items) == 2 and summary["items"] == 2
    with pytest.raises(DataError, match="no such file"):
        load_rows(str(tmp_path / "missing"), "test")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no parquet"):
        load_rows(str(tmp_path / "empty"), "test")
    assert resolve_image({"bytes": b"abc", "path": None}, None) == b"abc"
    assert resolve_image({"bytes": None, "path": "a.png"}, tmp_path) == str(tmp_path / "a.png")

    # Repeated ids get a deterministic suffix (ids key the per-item cache)
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = benchmark_rows("mmstar", 3)
    for r in rows:
        r["index"] = 7
        r["image"] = r["image"]["bytes"]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "val.parquet")
    items, _ = load_items(get_benchmark("mmstar"), DataSource("mmstar", str(tmp_path / "val.parquet"), "val"))
    assert [it.id for it in items] == ["7", "7#1", "7#2"]


def test_hugging_face_code_path_decodes_images(tmp_path, monkeypatch):
    """`load_hf_rows` through `datasets.load_dataset` (a local dataset folder: offline), images as PIL via the Image
    feature, and split=None concatenating every split (VisNumBench)."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = benchmark_rows("visnumbench", 4)
    for r in rows:
        r["image"] = r["image"]["bytes"]
    folder = tmp_path / "hub_copy"
    for split, part in (("synthetic", rows[:2]), ("real", rows[2:])):
        ds = datasets.Dataset.from_list([{**r, "image": {"bytes": r["image"], "path": None}} for r in part])
        ds = ds.cast_column("image", datasets.Image())
        ds.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    spec = get_benchmark("visnumbench")
    items, summary = load_items(spec, DataSource("visnumbench", f"hf:{folder}", None))
    assert summary["rows"] == 4 and len(items) == 4
    assert all(isinstance(it.images[0], Image.Image) for it in items)
    only, _ = load_items(spec, DataSource("visnumbench", f"hf:{folder}", "real"))
    assert [it.id for it in only] == [r["id"] for r in rows[2:]]
    with pytest.raises(DataError, match="load_dataset failed"):
        load_rows("hf:" + str(tmp_path / "no-such-dataset"), "test")
