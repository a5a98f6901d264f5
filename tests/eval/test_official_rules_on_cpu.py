"""The tricky-prediction table: per benchmark, responses a model really writes, scored by our rules, against the
score the benchmark's official metric gives. Expected values come from reading the official code:

- MMStar, RealWorldQA letters: lmms_eval/tasks/_task_utils/mcq_extract.py `extract_mcq_answer` (case-sensitive
  letters, priority start > end > phrase > "(X)" > "X." ..., an option's text is NOT mapped to its letter);
- RealWorldQA free answers: lmms_eval/tasks/realworldqa/utils.py (lower, strip, drop a trailing "." then ==);
- MMMU: lmms_eval/tasks/mmmu/utils.py + _task_utils/mmmu_mcq_utils.py (MMMU-Benchmark eval_utils.py): open answers
  compared as numbers rounded to 2 decimals or as contained lower-case text; a letter is guessed when none is named;
- the visplay protocol: VisPlay Evaluation/eval_boxed_accuracy.py (`\\boxed\\{([^}]+)\\}`, else the first 100
  characters; upper-case, drop ",. " and whitespace, ==), quirks included.
HallusionBench, VisNumBench, MathVerse and MATH-Vision are officially GPT-judged/extracted; for them the table states
our documented rule (docs/eval.md) and the value a careful reader gives. Rows are fed through each benchmark's own
adapter, from rows shaped like the real datasets. Every case also pins where the final answer came from.
"""

import random

import pytest

from verl_ext.eval import official
from verl_ext.eval.benchmarks import get_benchmark
from verl_ext.eval.scoring import extract_final_answer, score_response

IMG = b"not decoded here"

ROWS = {
    "mmstar": {
        "index": 7,
        "question": "How many apples are there?\nOptions: A: 3, B: 4, C: 5, D: 6",
        "answer": "B",
        "image": IMG,
        "category": "fine-grained perception",
        "l2_category": "object counting",
    },
    "rwqa_mc": {
        "image": IMG,
        "question": "Which way does the road turn?\nA. left\nB. right\nC. straight\n"
        "Please answer directly with only the letter of the correct option and nothing else.",
        "answer": "B",
    },
    "rwqa_word": {
        "image": IMG,
        "question": "Which side is the truck on?\nPlease answer directly with a single word or number.",
        "answer": "left",
    },
    "rwqa_number": {
        "image": IMG,
        "question": "How many cars are there?\nPlease answer directly with a single word or number.",
        "answer": "3",
    },
    "mmmu_mc": {
        "id": "validation_Math_1",
        "question": "<image 1> How many apples?",
        "options": "['4', '5', '6', '7']",
        "answer": "B",
        "question_type": "multiple-choice",
        "image_1": IMG,
    },
    "mmmu_open": {
        "id": "validation_Physics_2",
        "question": "<image 1> What is the ratio?",
        "options": "[]",
        "answer": "3.43",
        "question_type": "open",
        "image_1": IMG,
    },
    "mmmu_open_list": {
        "id": "validation_Physics_3",
        "question": "<image 1> What is the ratio?",
        "options": "[]",
        "answer": "['24/7', '3.429']",
        "question_type": "open",
        "image_1": IMG,
    },
    "mmmu_open_comma": {"id": "v_4", "question": "Q", "options": "[]", "answer": "1,000", "question_type": "open"},
    "mmmu_open_text": {"id": "v_5", "question": "Q", "options": "[]", "answer": "Paris", "question_type": "open"},
    "mmmu_open_12": {"id": "v_6", "question": "Q", "options": "[]", "answer": "12", "question_type": "open"},
    "hb_no": {
        "category": "VD",
        "subcategory": "illusion",
        "set_id": "0",
        "figure_id": "1",
        "question_id": "0",
        "question": "Is the left line longer?",
        "gt_answer": "0",
        "image": IMG,
    },
    "hb_yes": {
        "category": "VS",
        "subcategory": "chart",
        "set_id": "2",
        "figure_id": "1",
        "question_id": "1",
        "question": "Is the tallest bar 7?",
        "gt_answer": "1",
        "image": IMG,
    },
    "mathverse_mc": {
        "sample_index": "1",
        "question_type": "multi-choice",
        "question": "How many?\nChoices:\nA:4\nB:5\nC:6\nD:7",
        "question_for_eval": "How many?\nChoices:\nA:4\nB:5\nC:6\nD:7",
        "query_cot": "Please reason. How many?\nChoices:\nA:4\nB:5\nC:6\nD:7",
        "answer": "B",
        "image": IMG,
    },
    "mathverse_free": {
        "sample_index": "2",
        "question_type": "free-form",
        "question": "What is the angle?",
        "query_cot": "Please reason. What is the angle?",
        "answer": "30",
        "image": IMG,
    },
    "mathvision": {"id": "3", "question": "<image1>\nWhat fraction is shaded?", "options": [], "answer": "1/2"},
    "visnumbench": {
        "class": "Quantity",
        "id": "9_Quantity",
        "question": "Which is a reasonable estimate?",
        "option": "(a) 4 (b) 5 (c) 6 (d) 7",
        "answer": "(b) 5",
        "task_class": "value estimation",
        "Attributes": "Synthetic",
        "image": IMG,
    },
}
BENCH = {
    "mmstar": "mmstar",
    "rwqa_mc": "realworldqa",
    "rwqa_word": "realworldqa",
    "rwqa_number": "realworldqa",
    "mmmu_mc": "mmmu",
    "mmmu_open": "mmmu",
    "mmmu_open_list": "mmmu",
    "mmmu_open_comma": "mmmu",
    "mmmu_open_text": "mmmu",
    "mmmu_open_12": "mmmu",
    "hb_no": "hallusionbench",
    "hb_yes": "hallusionbench",
    "mathverse_mc": "mathverse",
    "mathverse_free": "mathverse",
    "mathvision": "mathvision",
    "visnumbench": "visnumbench",
}


def item_for(row_name: str):
    row = dict(ROWS[row_name])
    row.setdefault("image", IMG)
    return get_benchmark(BENCH[row_name]).adapter(row, 0)


# (row, response, official score, source of the final answer)
TABLE = [
    # MMStar: lmms-eval's extract_mcq_answer on the final answer
    ("mmstar", "\\boxed{B}", 1, "boxed"),
    ("mmstar", "**Answer:** B", 1, "phrase"),
    ("mmstar", "Looking at the fruit bowl, I count them.\nThe correct option is B", 1, "phrase"),
    ("mmstar", "Let me count the apples in the bowl.\nB", 1, "last_line"),
    ("mmstar", "<think>maybe \\boxed{A}</think>\nThe answer is B.", 1, "phrase"),  # the box in <think> loses
    ("mmstar", "\\boxed{(B)}", 1, "boxed"),
    ("mmstar", "\\boxed{B. 4}", 1, "boxed"),
    ("mmstar", "\\boxed{\\text{B}}", 1, "boxed"),
    ("mmstar", "\\boxed{4}", 0, "boxed"),  # the option's text: the official extractor finds no letter
    ("mmstar", "\\boxed{b}", 0, "boxed"),  # letters are case-sensitive there
    ("mmstar", "\\boxed{C}", 0, "boxed"),
    ("mmstar", "I think A is wrong and the best answer is B", 1, "phrase"),
    ("mmstar", "A cat sits next to them. Answer: D", 0, "phrase"),
    ("mmstar", "<think>The answer is B</think>", 0, "none"),  # nothing outside <think>
    ("mmstar", "$\\boxed{\\textbf{B}}$", 1, "boxed"),
    # RealWorldQA: letters for A-D golds, exact match for free answers
    ("rwqa_mc", "\\boxed{B}", 1, "boxed"),
    ("rwqa_mc", "\\boxed{right}", 0, "boxed"),
    ("rwqa_mc", "**Answer**: (B)", 1, "phrase"),
    ("rwqa_word", "\\boxed{left}", 1, "boxed"),
    ("rwqa_word", "\\boxed{Left.}", 1, "boxed"),
    ("rwqa_word", "\\boxed{the car on the left turns right}", 0, "boxed"),  # no containment
    ("rwqa_word", "left", 1, "last_line"),
    ("rwqa_number", "\\boxed{3}", 1, "boxed"),
    ("rwqa_number", "\\boxed{three}", 0, "boxed"),
    ("rwqa_number", "\\boxed{3.0}", 0, "boxed"),
    # MMMU: its own parsers
    ("mmmu_mc", "\\boxed{B}", 1, "boxed"),
    ("mmmu_mc", "\\boxed{(B)}", 1, "boxed"),
    ("mmmu_mc", "\\boxed{D}", 0, "boxed"),
    ("mmmu_mc", "The answer is 5 because there are five apples in the picture", 1, "phrase"),  # option text, >5 words
    ("mmmu_mc", "(A) is too few, so I pick (B)", 1, "response"),
    ("mmmu_open", "\\boxed{3.429}", 1, "boxed"),  # 2 decimals: 3.429 -> 3.43
    ("mmmu_open", "\\boxed{3.44}", 0, "boxed"),
    ("mmmu_open", "So the ratio is 3.43.", 1, "response"),
    ("mmmu_open_list", "\\boxed{3.43}", 1, "boxed"),
    ("mmmu_open_list", "\\boxed{24/7}", 1, "boxed"),
    ("mmmu_open_comma", "\\boxed{1000}", 1, "boxed"),
    ("mmmu_open_text", "\\boxed{The capital is Paris}", 1, "boxed"),
    ("mmmu_open_text", "\\boxed{London}", 0, "boxed"),
    ("mmmu_open_12", "\\boxed{112}", 0, "boxed"),
    ("mmmu_open_12", "\\boxed{x = 12}", 1, "boxed"),
    # HallusionBench: yes/no through LaTeX wrappers and negations (officially GPT-judged)
    ("hb_no", "\\boxed{\\text{No}}", 1, "boxed"),
    ("hb_no", "\\textbf{No}", 1, "last_line"),
    ("hb_no", "\\boxed{\\mathrm{No}}", 1, "boxed"),
    ("hb_no", "$\\boxed{\\text{NO}}$", 1, "boxed"),
    ("hb_no", "No, the left line is as long as the right one.", 1, "response"),
    ("hb_no", "\\boxed{Not true}", 1, "boxed"),
    ("hb_no", "\\boxed{False}", 1, "boxed"),
    ("hb_no", "\\boxed{Not correct}", 1, "boxed"),
    ("hb_no", "\\boxed{Yes, it is}", 0, "boxed"),
    ("hb_no", "<think>no idea</think>", 0, "none"),
    ("hb_yes", "\\boxed{Yes}", 1, "boxed"),
    ("hb_yes", "\\textbf{Yes}", 1, "last_line"),
    ("hb_yes", "<think>No wait, let me look again.</think> \\boxed{Yes}", 1, "boxed"),
    ("hb_yes", "\\boxed{Incorrect}", 0, "boxed"),
    ("hb_yes", "\\boxed{It is not}", 0, "boxed"),
    ("hb_yes", "Final answer: yes", 1, "phrase"),
    # MathVerse / MATH-Vision / VisNumBench: letter or value (officially GPT-extracted)
    ("mathverse_mc", "\\boxed{B}", 1, "boxed"),
    ("mathverse_mc", "\\boxed{5}", 1, "boxed"),
    ("mathverse_mc", "\\boxed{5.0}", 1, "boxed"),
    ("mathverse_mc", "\\boxed{(b) 5}", 1, "boxed"),
    ("mathverse_mc", "\\boxed{E}", 0, "boxed"),
    ("mathverse_free", "\\boxed{30.0}", 1, "boxed"),
    ("mathverse_free", "\\boxed{\\frac{60}{2}}", 1, "boxed"),
    ("mathverse_free", "\\boxed{31}", 0, "boxed"),
    ("mathvision", "\\boxed{0.5}", 1, "boxed"),
    ("mathvision", "\\boxed{\\dfrac{1}{2}}", 1, "boxed"),
    ("visnumbench", "\\boxed{(b)}", 1, "boxed"),
    ("visnumbench", "\\boxed{b}", 1, "boxed"),
    ("visnumbench", "\\boxed{B. 5}", 1, "boxed"),
    ("visnumbench", "\\boxed{6}", 0, "boxed"),
]


def test_the_table_is_large_and_covers_every_rule_scored_benchmark():
    assert len(TABLE) >= 60
    assert {BENCH[r] for r, *_ in TABLE} == {
        "mmstar",
        "realworldqa",
        "mmmu",
        "hallusionbench",
        "mathverse",
        "mathvision",
        "visnumbench",
    }


@pytest.mark.parametrize("row, response, expected, source", TABLE, ids=[f"{r}:{x[:30]}" for r, x, *_ in TABLE])
def test_tricky_predictions_score_as_the_official_metric(row, response, expected, source):
    result = score_response(item_for(row), response)
    assert (result.score, result.source) == (float(expected), source), result


def test_mmmu_guesses_a_letter_like_the_official_parser_but_reproducibly():
    item = item_for("mmmu_mc")
    result = score_response(item, "\\boxed{maybe}")
    expected = random.Random(item.id).choice(list("ABCD"))  # mmmu_mcq_utils: random.choice(all_choices)
    assert result.guessed and result.normalized == expected and result.score == float(expected == "B")
    assert score_response(item, "\\boxed{maybe}") == result  # the same guess on a re-run


@pytest.mark.parametrize(
    "response, expected",
    [
        ("The answer is (B).", "B"),  # mcq_extract.py docstring example
        ("B", "B"),
        ("I choose C", "C"),  # "end" outranks the phrase
        ("(A) or maybe (C) hmm", "C"),  # parentheses: the later one
        ("Answer: D. something", "D"),  # start? no: "Answer" starts with A followed by "n" (alpha): period wins
        ("", ""),
        ("no letters here", ""),
    ],
)
def test_mcq_extract_port(response, expected):
    assert official.extract_mcq_answer(response, ["A", "B", "C", "D"]) == expected


def test_mmmu_open_parser_port():
    # mmmu/utils.py parse_open_response: the tail after the last indicator, and every number in it, normalised
    preds = official.mmmu_parse_open("The total is 1,234.5 kg. Therefore the answer is 1,234.5")
    assert 1234.5 in preds
    assert official.mmmu_normalize_str("A") == [" a", "a "]  # one character: padded against trivial matches
    assert official.mmmu_eval_open("a", ["the answer a "]) and not official.mmmu_eval_open("a", ["banana"])


def test_hallusion_accuracies_port():
    def r(set_id, figure_id, question_id, correct):
        return dict(category="VD", subcategory="x", set_id=set_id, figure_id=figure_id, question_id=question_id,
                    correct=correct)  # fmt: skip

    records = [r(0, 0, 0, True), r(0, 1, 0, False), r(0, 0, 1, True), r(0, 1, 1, True), r(1, 0, 0, True)]
    acc = official.hallusion_accuracies(records)
    # aAcc 4/5; figures (0,0) ok, (0,1) not, (1,0) ok -> 2/3; questions (0,q0) not, (0,q1) ok, (1,q0) ok -> 2/3
    assert acc == {"aAcc": 80.0, "fAcc": 66.67, "qAcc": 66.67}
    assert official.hallusion_accuracies([]) == {"aAcc": None, "fAcc": None, "qAcc": None}


@pytest.mark.parametrize(
    "response, gold, expected",
    [
        ("\\boxed{b.}", "B", 1),  # upper-cased, '.' dropped
        ("\\boxed{3.429}", "3.43", 0),
        ("no box here", "1,000", 0),  # the first 100 characters are the answer
        ("\\boxed{\\text{Yes}}", "Yes", 0),  # [^}]+ stops at the first '}': "\\text{Yes" (the reference's quirk)
        ("\\boxed{5} and later \\boxed{6}", "5", 0),  # the last box
        ("\\boxed{1, 000}", "1000", 1),  # commas and spaces dropped
    ],
)
def test_visplay_protocol_rule_is_the_references(response, gold, expected):
    from verl_ext.eval.protocol_visplay import VISPLAY_BENCHMARKS

    item = VISPLAY_BENCHMARKS["mmmu"].adapter({"problem": "<image>Q", "answer": gold, "images": [IMG]}, 0)
    assert item.question == "Q" and item.rule == "visplay"
    assert score_response(item, response).score == float(expected)


def test_final_answer_prefers_outside_think_and_unwraps_latex():
    assert extract_final_answer("<think>\\boxed{1}</think> so \\boxed{2}") == ("2", "boxed")
    assert extract_final_answer("<think>\\boxed{1}</think> Final answer: 2") == ("2", "phrase")
    assert extract_final_answer("<think>only \\boxed{1}</think>") == ("1", "boxed_in_think")
    assert extract_final_answer("\\boxed{\\text{\\textbf{No}}}") == ("No", "boxed")
    assert extract_final_answer("reasoning ... </think>\n**Answer:** C") == ("C", "phrase")
