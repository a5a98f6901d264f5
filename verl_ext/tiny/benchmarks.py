"""Small benchmark-shaped fixtures: a few items per evaluation benchmark, in each real dataset's own columns.

Stand-ins for MM-Vet, MMMU, RealWorldQA, VisNumBench, MathVerse, MATH-Vision, HallusionBench and MMStar, so the
evaluation code runs offline: same column names, answer formats (option letters, `<AND>`/`<OR>`, "(b) 73%", yes/no as
"1"/"0", option lists stored as a string) and image storage (HF `Image` structs, path strings) as the published
datasets. Questions are about the test kit's synthetic images, and the answers are their ground truth.

    write_benchmark_suite(root)            # root/<name>/<split>-00000-of-00001.parquet, as an HF snapshot
    write_benchmark_folder(folder, name)   # the JSON + image files layout of the GitHub releases
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .images import make_images, png_bytes

BENCHMARK_NAMES = (
    "mmvet",
    "mmmu",
    "realworldqa",
    "visnumbench",
    "mathverse",
    "mathvision",
    "hallusionbench",
    "mmstar",
)
# The split each fixture is written as (the split the evaluation registry reads).
SPLITS = {
    "mmvet": "test",
    "mmmu": "validation",
    "realworldqa": "test",
    "visnumbench": "test",
    "mathverse": "testmini",
    "mathvision": "test",
    "hallusionbench": "image",
    "mmstar": "val",
}
DEFAULT_ITEMS = 4
LETTERS = "ABCDEFGHIJ"


# --------------------------------------------------------------------------------------------------
# Facts about the synthetic images: (question, numeric answer, distractors)
# --------------------------------------------------------------------------------------------------


def _fact(scene: dict) -> tuple[str, int, list[int]]:
    kind = scene["kind"]
    if kind == "count":
        q = f"How many {scene['color']} {scene['shape']}s are in the image?"
        value = scene["count"]
    elif kind == "mixed":
        shape = sorted(scene["shape_counts"])[0]
        q = f"How many {shape}s are in the image?"
        value = scene["shape_counts"][shape]
    else:
        q = "What is the height of the tallest bar in the chart?"
        value = max(scene["values"])
    distractors = [v for v in (value + 1, value + 2, value + 3, max(0, value - 1)) if v != value]
    return q, value, list(dict.fromkeys(distractors))[:3]


def _options(value: int, distractors: list[int], index: int) -> tuple[list[str], str]:
    """Four options with the right one at a position that varies with `index`; returns (options, gold letter)."""
    opts = [str(d) for d in distractors[:3]]
    pos = index % 4
    opts.insert(pos, str(value))
    return opts, LETTERS[pos]


def _hf_image(image) -> dict:
    """An HF `Image` feature cell as `Dataset.to_parquet` stores it."""
    return {"bytes": png_bytes(image), "path": None}


# --------------------------------------------------------------------------------------------------
# Rows per benchmark, in the published column schemas
# --------------------------------------------------------------------------------------------------


def _facts(n: int, seed: int):
    """(i, image, scene, question, value, options, gold letter, all images): the n items both layouts are built on."""
    images = make_images(n + 1, seed=seed)
    for i in range(n):
        image, scene = images[i]
        q, value, distractors = _fact(scene)
        opts, gold = _options(value, distractors, i)
        yield i, image, scene, q, value, opts, gold, images


def benchmark_rows(name: str, n: int = DEFAULT_ITEMS, seed: int = 0) -> list[dict]:
    """`n` rows of benchmark `name` with its real columns; image cells are HF `Image` structs (bytes + path)."""
    if name not in BENCHMARK_NAMES:
        raise ValueError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARK_NAMES)})")
    return [_ROW_MAKERS[name](*fact) for fact in _facts(n, seed)]


def _mmvet(i, image, scene, q, value, opts, gold, images):
    # Free-form; the answer may list alternatives (<OR>) or several required parts (<AND>).
    if i % 3 == 1:
        answer = f"{value}<OR>{_word(value)}"
    elif i % 3 == 2:
        answer = f"{scene['background']}<AND>{value}"
        q = f"What is the background colour, and {q[0].lower()}{q[1:]}"
    else:
        answer = str(value)
    return {
        "question_id": f"v1_{i}",
        "image": _hf_image(image),
        "question": q,
        "answer": answer,
        "image_source": "synthetic",
        "capability": ["rec", "math"] if i % 2 else ["rec"],
    }


def _mmmu(i, image, scene, q, value, opts, gold, images):
    row = {
        "id": f"validation_Math_{i + 1}",
        "question": f"<image 1> {q}",
        "options": repr(opts),  # MMMU stores the option list as the string of a Python list
        "explanation": "",
        "img_type": "['Diagrams']",
        "answer": gold,
        "topic_difficulty": "Easy",
        "question_type": "multiple-choice",
        "subfield": "Counting",
    }
    for k in range(1, 8):
        row[f"image_{k}"] = None
    row["image_1"] = _hf_image(image)
    if i == 1:  # an open question
        row.update(options="[]", answer=str(value), question_type="open")
    if i == 2:  # two images, referenced in the text
        row["image_2"] = _hf_image(images[-1][0])
        row["question"] = f"<image 1> {q} (<image 2> is another picture, for comparison.)"
    if i == 3:  # an option that is a picture, named only in the options (as MMMU stores it)
        row["image_2"] = _hf_image(images[-1][0])
        options = list(opts)
        options[(LETTERS.index(gold) + 1) % 4] = "<image 2>"
        row["options"] = repr(options)
    return row


def _realworldqa(i, image, scene, q, value, opts, gold, images):
    if i % 3 == 2:  # RealWorldQA also has short free answers (numbers, words)
        question = f"{q}\nPlease answer directly with a single word or number."
        answer = str(value)
    else:
        lines = "\n".join(f"{LETTERS[k]}. {o}" for k, o in enumerate(opts[:3] if gold != "D" else opts))
        question = f"{q}\n{lines}\nPlease answer directly with only the letter of the correct option and nothing else."
        answer = gold
    return {"image": _hf_image(image), "question": question, "answer": answer}


def _visnumbench(i, image, scene, q, value, opts, gold, images):
    option = " ".join(f"({LETTERS[k].lower()}) {o}" for k, o in enumerate(opts))
    return {  # the columns of GML-FMGroup/VisNumBench
        "class": "Quantity",
        "id": f"{i}_Quantity",
        "question": f"Which of the following is a reasonable estimate? {q}",
        "option": option,
        "answer": f"({gold.lower()}) {value}",  # "(b) 73%": the letter first, then the option text
        "task_class": "value estimation",
        "Attributes": "Synthetic",
        "image": _hf_image(image),
    }


def _mathverse(i, image, scene, q, value, opts, gold, images):
    if i % 2 == 0:
        choices = "\n".join(f"{LETTERS[k]}:{o}" for k, o in enumerate(opts))
        question = f"{q}\nChoices:\n{choices}"
        qtype, answer = "multi-choice", gold
        instr = "provide the correct option letter, e.g., A, B, C, D"
    else:
        question, qtype, answer = q, "free-form", str(value)
        instr = "provide the final value, e.g., 1, 2.5, 300"
    return {
        "sample_index": str(i + 1),
        "problem_index": str(i // 2 + 1),
        "problem_version": "Text Dominant" if i % 2 == 0 else "Vision Intensive",
        "question": question,
        "image": _hf_image(image),
        "answer": answer,
        "question_type": qtype,
        "metadata": {"split": "testmini", "source": "synthetic", "subject": "counting", "subfield": scene["kind"]},
        "query_wo": f"According to the question shown in the image, please directly answer the question and "
        f"{instr}.\nQuestion: {question}",
        "query_cot": f"According to the question shown in the image, please first conduct reasoning, and then answer "
        f"the question and {instr}, at the end.\nQuestion: {question}",
        "question_for_eval": question,
    }


def _mathvision(i, image, scene, q, value, opts, gold, images):
    mc = i % 2 == 0
    return {
        "id": str(i + 1),
        "question": f"<image1>\n{q}",
        "options": opts if mc else [],
        "image": f"images/{i + 1}.jpg",  # the path inside the release; the pixels are in decoded_image
        "decoded_image": _hf_image(image),
        "answer": gold if mc else str(value),
        "solution": None,
        "level": 1 + i % 5,
        "subject": "counting",
    }


def _hallusionbench(i, image, scene, q, value, opts, gold, images):
    truthful = i % 2 == 0
    if scene["kind"] == "bar_chart":
        claim = max(scene["values"]) if truthful else max(scene["values"]) + 2
        question = f"Is the tallest bar in the chart {claim} units high?"
    else:
        claim = value if truthful else value + 2
        things = q.removeprefix("How many ").removesuffix(" are in the image?")
        question = f"Are there exactly {claim} {things} in the image?"
    return {
        "category": "VD",
        "subcategory": "illusion",
        "visual_input": "1",
        "set_id": str(i // 2),
        "figure_id": str(i % 2),
        "sample_note": "synthetic",
        "question_id": str(i),
        "question": question,
        "gt_answer_details": f"There are {value}.",
        "gt_answer": "1" if truthful else "0",  # 1 = yes, 0 = no
        "filename": f"./hallusion_bench/VD/illusion/{i}_{i % 2}.png",
        "image": _hf_image(image),
    }


def _mmstar(i, image, scene, q, value, opts, gold, images):
    options = ", ".join(f"{LETTERS[k]}: {o}" for k, o in enumerate(opts))
    return {
        "index": i,
        "question": f"{q}\nOptions: {options}",
        "image": _hf_image(image),
        "answer": gold,
        "category": "fine-grained perception",
        "l2_category": "object counting",
        "meta_info": {"source": "synthetic", "split": "val", "image_path": f"images/{i}.jpg"},
    }


_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]


def _word(value: int) -> str:
    return _WORDS[value] if 0 <= value < len(_WORDS) else str(value)


_ROW_MAKERS = {
    "mmvet": _mmvet,
    "mmmu": _mmmu,
    "realworldqa": _realworldqa,
    "visnumbench": _visnumbench,
    "mathverse": _mathverse,
    "mathvision": _mathvision,
    "hallusionbench": _hallusionbench,
    "mmstar": _mmstar,
}


# --------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------


def write_benchmark_parquet(path, name: str, n: int = DEFAULT_ITEMS, seed: int = 0) -> Path:
    """One benchmark as a parquet file with the columns (and image structs) `datasets` exports."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = benchmark_rows(name, n, seed)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    inferred = pa.Table.from_pylist(rows)
    fields = []
    for f in inferred.schema:
        if f.name == "image" and name == "mathvision":  # MATH-Vision: a path string; pixels in decoded_image
            fields.append(pa.field(f.name, pa.string()))
        elif f.name in ("image", "decoded_image") or re.fullmatch(r"image_\d+", f.name):
            fields.append(pa.field(f.name, image_type))
        elif pa.types.is_null(f.type):  # all-None columns are strings in the published sets
            fields.append(pa.field(f.name, pa.string()))
        else:
            fields.append(f)
    table = inferred.cast(pa.schema(fields))
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def write_benchmark_suite(root, names=BENCHMARK_NAMES, n: int = DEFAULT_ITEMS, seed: int = 0) -> dict[str, Path]:
    """Every benchmark under `root/<name>/<split>-00000-of-00001.parquet` (the layout of an HF dataset snapshot)."""
    root = Path(root)
    out = {}
    for name in names:
        folder = root / name
        write_benchmark_parquet(folder / f"{SPLITS[name]}-00000-of-00001.parquet", name, n, seed)
        out[name] = folder
    return out


def write_benchmark_folder(folder, name: str, n: int = DEFAULT_ITEMS, seed: int = 0) -> Path:
    """A benchmark as its GitHub release ships it: a JSON/JSONL file plus image files referenced by relative path.

    VisNumBench: `<folder>/Real.json` = {"type", "total", "data": [{text, image_path, option, answer, ...}]};
    MATH-Vision: `<folder>/data/testmini.jsonl` with `image: images/<id>.jpg`; others: `<folder>/data.jsonl` with an
    `image` path per row.
    """
    folder = Path(folder)
    rows = benchmark_rows(name, n, seed)
    images = make_images(n + 1, seed=seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    plain = []
    for i, row in enumerate(rows):
        rel = f"images/{i + 1}.png"
        (folder / rel).write_bytes(png_bytes(images[i][0]))
        row = {k: v for k, v in row.items() if not (k == "decoded_image" or re.fullmatch(r"image_\d+", k))}
        if name == "visnumbench":
            row["text"] = row.pop("question")  # the release's key for the question
            row["image_path"] = rel
            row.pop("image")
        else:
            row["image"] = rel
        plain.append(row)
    if name == "visnumbench":
        path = folder / "Real.json"
        path.write_text(json.dumps({"type": "Real-World Dataset", "total": len(plain), "data": plain}, indent=1))
    else:
        path = folder / ("data/testmini.jsonl" if name == "mathvision" else "data.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in plain))
    return folder


# --------------------------------------------------------------------------------------------------
# The reference implementation's benchmark copies (problem / answer / images), for --protocol visplay
# --------------------------------------------------------------------------------------------------

# The reference's folder layout (VisPlay Evaluation/eval_boxed_accuracy.py): one parquet holds four sets, told apart by
# `file_name`; the others have a parquet each.
VISPLAY_LAYOUT = {
    "mmmu": ("MMMU/data/test-00000-of-00001.parquet", None),
    "mmvet": ("MLLM_test/test.parquet", "mm-vet"),
    "realworldqa": ("MLLM_test/test.parquet", "realWorldQA"),
    "visnumbench": ("visnumbench/data/test-00000-of-00001.parquet", None),
    "mathverse": ("MLLM_test/test.parquet", "mathverse"),
    "mathvision": ("MLLM_test/test.parquet", "mathvision"),
    "hallusionbench": ("hallusionbench/data/test-00000-of-00001.parquet", None),
}


def visplay_rows(name: str, n: int = DEFAULT_ITEMS, seed: int = 0) -> list[dict]:
    """`n` rows in the reference's copies' columns: `problem` (with an `<image>` placeholder), `answer`, `images`
    (a list of image structs) and, in the shared MLLM_test file, `file_name`."""
    _, file_name = VISPLAY_LAYOUT[name]
    rows = []
    for i, image, _scene, q, value, opts, gold, _images in _facts(n, seed):
        if name == "hallusionbench":
            truthful = i % 2 == 0
            problem, answer = (
                f"<image>Is the answer to '{q}' {value if truthful else value + 2}?",
                ("Yes" if truthful else "No"),
            )
        elif name in ("mmmu", "realworldqa", "visnumbench") or (name == "mathvision" and i % 2 == 0):
            listed = "\n".join(f"{LETTERS[k]}. {o}" for k, o in enumerate(opts))
            problem, answer = f"<image>{q}\nOptions:\n{listed}", gold
        else:
            problem, answer = f"<image>{q}", str(value)
        row = {"problem": problem, "answer": answer, "images": [_hf_image(image)]}
        if file_name:
            row["file_name"] = file_name
        rows.append(row)
    return rows


def write_visplay_suite(root, names=tuple(VISPLAY_LAYOUT), n: int = DEFAULT_ITEMS, seed: int = 0) -> Path:
    """The reference's benchmark copies under `root`: MLLM_test/test.parquet (four sets by file_name), MMMU/,
    visnumbench/, hallusionbench/ (data/test-00000-of-00001.parquet each)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    by_file: dict[str, list[dict]] = {}
    for name in names:
        by_file.setdefault(VISPLAY_LAYOUT[name][0], []).extend(visplay_rows(name, n, seed))
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for rel, rows in by_file.items():
        fields = [("problem", pa.string()), ("answer", pa.string()), ("images", pa.list_(image_type))]
        if "file_name" in rows[0]:
            fields.append(("file_name", pa.string()))
        table = pa.Table.from_pylist(rows, schema=pa.schema(fields))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)
    return root
