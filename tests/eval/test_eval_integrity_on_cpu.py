"""What evaluation does with data and caches it cannot trust: an unreadable or non-image file skips its item with a
counted, named reason (the run goes on); an image path that leaves the data folder is refused; a cache record whose
content does not match its checksum is recomputed, not used; the benchmark fixtures are sealed and rebuilt when
damaged. Also the adapters' metadata and the two names of the lmms-eval mirrors."""

import json

import pytest

from verl_ext.eval import data as data_mod
from verl_ext.eval.benchmarks import get_benchmark
from verl_ext.eval.cache import JsonlStore
from verl_ext.eval.data import DataError, DataSource, load_items
from verl_ext.tiny.benchmarks import benchmark_rows, write_benchmark_folder


def _release(tmp_path, name="mmstar"):
    folder = write_benchmark_folder(tmp_path / name, name, n=4)
    return folder, folder / "data.jsonl"


def _rewrite_rows(path, edit):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    edit(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_unreadable_and_non_image_files_skip_their_item_with_a_named_reason(tmp_path):
    folder, jsonl = _release(tmp_path)
    (folder / "images" / "2.png").write_bytes(b"this is not an image")  # corrupt
    (folder / "notes.txt").write_text("a text file named as an image")

    def edit(rows):
        rows[2]["image"] = "notes.txt"  # a non-image file
        rows[3]["image"] = "images/missing.png"

    _rewrite_rows(jsonl, edit)
    items, summary = load_items(get_benchmark("mmstar"), DataSource("mmstar", str(folder), "val"))
    assert [it.id for it in items] == ["0"]
    assert summary["skipped"] == 3 and summary["skip_reasons"] == {"corrupt": 2, "missing": 1}
    assert {s["id"] for s in summary["skipped_items"]} == {"1", "2", "3"}


def test_image_paths_may_not_leave_the_data_folder(tmp_path):
    folder, jsonl = _release(tmp_path)
    outside = tmp_path / "secret.png"
    outside.write_bytes((folder / "images" / "1.png").read_bytes())  # a real image, but outside the folder

    def edit(rows):
        rows[1]["image"] = "../secret.png"
        rows[2]["image"] = str(outside)  # absolute
        rows[3]["image"] = "images/../../secret.png"

    _rewrite_rows(jsonl, edit)
    items, summary = load_items(get_benchmark("mmstar"), DataSource("mmstar", str(folder), "val"))
    assert [it.id for it in items] == ["0"] and summary["skip_reasons"] == {"outside_data": 3}
    assert data_mod.contained_path(folder, "images/1.png") == (folder / "images" / "1.png").resolve()
    with pytest.raises(data_mod.OutsideDataError):
        data_mod.contained_path(None, "images/1.png")


def test_no_usable_item_is_an_error_naming_the_reasons(tmp_path):
    folder, jsonl = _release(tmp_path)
    _rewrite_rows(jsonl, lambda rows: [r.update(image="../x.png") for r in rows])
    with pytest.raises(DataError, match="outside_data"):
        load_items(get_benchmark("mmstar"), DataSource("mmstar", str(folder), "val"))


def test_both_lmms_eval_mirror_names_are_accepted(monkeypatch):
    asked = []

    def fake_hf(name, split, config):
        asked.append(name)
        if name.startswith("lmms-lab-encoder/"):
            raise DataError(f"{name}: load_dataset failed")
        return benchmark_rows("mmvet", 2)

    monkeypatch.setattr(data_mod, "load_hf_rows", fake_hf)
    spec = get_benchmark("mmvet")
    assert spec.hf_path == "lmms-lab-encoder/MMVet" and "lmms-lab/MMVet" in spec.hf_names
    items, _ = load_items(spec, DataSource("mmvet", spec.hf_path, "test"))
    assert asked == ["lmms-lab-encoder/MMVet", "lmms-lab/MMVet"] and len(items) == 2
    asked.clear()
    load_items(spec, DataSource("mmvet", "lmms-lab/MMVet", "test"))  # named explicitly: that one first
    assert asked == ["lmms-lab/MMVet"]
    for name in ("mmmu", "realworldqa", "hallusionbench"):
        hf = get_benchmark(name).hf_names
        assert hf[0].startswith("lmms-lab-encoder/") and hf[1] == hf[0].replace("lmms-lab-encoder/", "lmms-lab/")


def test_adapter_metadata_and_mmmu_option_images():
    mmvet = get_benchmark("mmvet").adapter({"question": "q", "answer": "a", "capability": "rec,ocr", "image": b""}, 0)
    assert mmvet.meta["capability"] == ["rec", "ocr"]  # not split into characters
    listed = get_benchmark("mmvet").adapter({"question": "q", "answer": "a", "capability": ["rec", "math"]}, 0)
    assert listed.meta["capability"] == ["rec", "math"]
    vis = get_benchmark("visnumbench").adapter(benchmark_rows("visnumbench", 1)[0], 0)
    assert vis.meta["class"] == "Quantity" and vis.meta["attributes"] == "Synthetic" and vis.meta["task_class"]
    row = benchmark_rows("mmmu", 4)[3]  # option picture: "<image 2>" only in the options
    assert "<image 2>" not in row["question"] and "<image 2>" in row["options"]
    item = get_benchmark("mmmu").adapter(row, 3)
    assert len(item.images) == 2 and "[image 2]" in "".join(item.choices.values())
    hb = get_benchmark("hallusionbench").adapter(benchmark_rows("hallusionbench", 2)[1], 1)
    assert {"set_id", "figure_id", "question_id", "category", "subcategory"} <= set(hb.meta)


def test_cache_records_are_checked_and_a_damaged_one_is_recomputed(tmp_path):
    path = tmp_path / "responses.jsonl"
    store = JsonlStore(path)
    store.put_many([{"key": "a", "response": "\\boxed{1}"}, {"key": "b", "response": "\\boxed{2}"}])
    assert JsonlStore(path).get("a")["response"] == "\\boxed{1}"
    lines = path.read_text().splitlines()
    path.write_text(lines[0].replace("\\\\boxed{1}", "\\\\boxed{9}") + "\n" + lines[1] + "\n")  # edited on disk
    reread = JsonlStore(path)
    assert "a" not in reread and reread.get("b")["response"] == "\\boxed{2}" and reread.corrupt == 1
    legacy = json.dumps({"key": "c", "response": "no checksum"})
    with open(path, "a") as f:
        f.write(legacy + "\n")
    reread = JsonlStore(path)
    assert "c" not in reread and reread.corrupt == 2
    reread.put({"key": "a", "response": "\\boxed{1}"})  # recomputed: the file is rewritten without the bad lines
    final = JsonlStore(path)
    assert final.corrupt == 0 and final.get("a")["response"] == "\\boxed{1}" and "b" in final


def test_benchmark_fixtures_are_sealed_and_rebuilt_when_damaged(tmp_path):
    root = data_mod.testkit_data_root(tmp_path)
    victim = next((root / "mmstar").glob("*.parquet"))
    good = victim.read_bytes()
    victim.write_bytes(good[:100])  # torn
    assert data_mod.testkit_data_root(tmp_path) == root and victim.read_bytes() == good
    assert (root / "visplay" / "MLLM_test" / "test.parquet").is_file()


def test_an_image_that_fails_to_decode_while_generating_is_skipped_not_fatal(tmp_path, monkeypatch):
    """A truncated JPEG passes the header check at load time and fails when decoded for the model: the item is
    skipped and named, the others are evaluated."""
    import io

    from PIL import Image

    from verl_ext.eval import runner
    from verl_ext.eval.generate import GenerationConfig

    folder, jsonl = _release(tmp_path)
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, "JPEG")
    (folder / "images" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    _rewrite_rows(jsonl, lambda rows: rows[1].update(image="images/cut.jpg"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    seen = []

    def canned(path, cfg, prompts, images, log=print):
        seen.extend(prompts)
        return ["\\boxed{A}"] * len(prompts)

    monkeypatch.setattr(runner, "generate_for_checkpoint", canned)
    source = DataSource("mmstar", str(folder), "val")
    res = runner.evaluate(
        [runner.Checkpoint("m", str(model))], [source], tmp_path / "out", GenerationConfig(), log=print
    )
    assert len(seen) == 3
    assert res["data"]["mmstar"]["skip_reasons"] == {"corrupt": 1}
    assert res["data"]["mmstar"]["skipped_items"] == [{"id": "1", "reason": "corrupt"}]
    assert res["scores"]["mmstar"]["m"]["rule"]["n"] == 3
