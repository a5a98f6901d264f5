"""The benchmarks' own answer rules, ported line by line from their pure-Python reference code (no model involved).

Each function names the file it follows; the tests check it against cases whose expected values come from reading
that file. Sources (lmms-eval, github.com/EvolvingLMMs-Lab/lmms-eval, which copies the MMMU rules from
github.com/MMMU-Benchmark/MMMU eval/eval_utils.py):

- `extract_mcq_answer`: lmms_eval/tasks/_task_utils/mcq_extract.py (MMStar, RealWorldQA option letters)
- `mmmu_parse_multi_choice`: lmms_eval/tasks/_task_utils/mmmu_mcq_utils.py `parse_mmmu_multi_choice_response`
- `mmmu_parse_open`, `mmmu_eval_open`, `mmmu_normalize_str`, `mmmu_extract_numbers`: lmms_eval/tasks/mmmu/utils.py
- `realworldqa_open_match`: lmms_eval/tasks/realworldqa/utils.py `realworldqa_process_results` (free answers)
- `hallusion_accuracies`: lmms_eval/tasks/hallusion_bench/evaluate_hb.py `hb_aggregation_result_intern`
  (aAcc per question, fAcc per figure, qAcc per question pair)
"""

from __future__ import annotations

import random
import re

# --------------------------------------------------------------------------------------------------
# lmms_eval/tasks/_task_utils/mcq_extract.py
# --------------------------------------------------------------------------------------------------

MCQ_DEFAULT_CHOICES = ["A", "B", "C", "D", "E", "F", "G", "H"]
_MCQ_PHRASES = [
    "the answer is",
    "answer is",
    "the correct answer is",
    "correct answer is",
    "the best answer is",
    "best answer is",
    "the correct option is",
    "correct option is",
    "the best option is",
    "best option is",
    "the choice is",
    "choice is",
    "the correct choice is",
    "correct choice is",
    "i choose",
    "i select",
    "i pick",
    "my answer is",
    "my choice is",
]
_MCQ_PRIORITY = {
    "start": 10,
    "end": 9,
    "phrase": 7,
    "parentheses": 6,
    "period": 5,
    "colon": 4,
    "right_paren": 3,
    "space": 2,
    "fallback": 0,
}


def extract_mcq_answer(response: str, choices: list[str] | None = None) -> str:
    """lmms-eval's shared option-letter extractor: candidates in ten formats, the highest-priority format wins, then
    the last position. "" when no letter is found."""
    if not response or not response.strip():
        return ""
    all_choices = choices or MCQ_DEFAULT_CHOICES
    text = response.strip()
    for char in [",", ".", "!", "?", ";", ":", "'", '"']:
        text = text.strip(char)
    text = " " + text + " "
    candidates: list[tuple[str, int, str]] = []
    for fmt, pattern in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"), ("right_paren", "{})")):
        for ch in all_choices:
            if pattern.format(ch) in text:
                candidates.append((ch, text.rfind(pattern.format(ch)), fmt))
    for ch in all_choices:
        if f"{ch} " in text:
            candidates.append((ch, text.rfind(f"{ch} "), "space"))
    text_lower = text.lower()
    for phrase in _MCQ_PHRASES:
        idx = text_lower.find(phrase)
        if idx != -1:
            after = idx + len(phrase)
            for ch in all_choices:
                ch_pos = text.find(ch, after)
                if ch_pos != -1:
                    candidates.append((ch, ch_pos, "phrase"))
    stripped = text.strip()
    for ch in all_choices:
        if stripped.startswith(ch) and (len(stripped) == 1 or not stripped[1].isalpha()):
            candidates.append((ch, 0, "start"))
    for ch in all_choices:
        if stripped.endswith(ch) and (len(stripped) == 1 or not stripped[-2].isalpha()):
            candidates.append((ch, len(text) - 1, "end"))
    if not candidates:
        for ch in all_choices:
            if ch in text:
                candidates.append((ch, text.rfind(ch), "fallback"))
    if not candidates:
        return ""
    candidates.sort(key=lambda x: (_MCQ_PRIORITY.get(x[2], 0), x[1]), reverse=True)
    return candidates[0][0]


# --------------------------------------------------------------------------------------------------
# MMMU (lmms_eval/tasks/_task_utils/mmmu_mcq_utils.py, lmms_eval/tasks/mmmu/utils.py)
# --------------------------------------------------------------------------------------------------


def mmmu_parse_multi_choice(
    response: str, all_choices: list[str], index2ans: dict[str, str], seed: str | int = 0
) -> tuple[str, bool]:
    """(letter, guessed). The official parser picks a random letter when it finds none; the guess is drawn from a
    generator seeded by `seed` (the item id), so a re-run gives the same number. `guessed` says it was a guess."""
    for char in [",", ".", "!", "?", ";", ":", "'"]:
        response = response.strip(char)
    response = " " + response + " "
    index_ans = True
    ans_with_brack = False
    candidates = []
    for choice in all_choices:
        if f"({choice})" in response:
            candidates.append(choice)
            ans_with_brack = True
    if len(candidates) == 0:
        for choice in all_choices:
            if f"{choice} " in response:
                candidates.append(choice)
    if len(candidates) == 0:
        for choice in all_choices:
            if f"{choice}." in response:
                candidates.append(choice)
    if len(candidates) == 0 and len(response.split()) > 5:
        for index, ans in index2ans.items():
            if ans.lower() in response.lower():
                candidates.append(index)
                index_ans = False
    if len(candidates) == 0:
        return random.Random(str(seed)).choice(all_choices), True
    if len(candidates) == 1:
        return candidates[0], False
    if index_ans:
        marker = "({})" if ans_with_brack else " {} "
        starts = [response.rfind(marker.format(can)) for can in candidates]
    else:
        starts = [response.lower().rfind(index2ans[can].lower()) for can in candidates]
    return candidates[starts.index(max(starts))], False  # np.argmax: the first maximum


def mmmu_extract_numbers(string: str) -> list[str]:
    pattern_commas = r"-?\b\d{1,3}(?:,\d{3})+\b"
    pattern_scientific = r"-?\d+(?:\.\d+)?[eE][+-]?\d+"
    pattern_simple = r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])"
    return (
        re.findall(pattern_commas, string)
        + re.findall(pattern_scientific, string)
        + re.findall(pattern_simple, string)
    )


def _mmmu_is_number(string: str) -> bool:
    try:
        float(string.replace(",", ""))
        return True
    except ValueError:
        return False


def mmmu_normalize_str(string: str) -> list:
    """Numbers become floats rounded to 2 decimals; text is lower-cased (one character gets spaces around it)."""
    string = string.strip()
    if _mmmu_is_number(string):
        return [round(float(string.replace(",", "")), 2)]
    string = string.lower()
    if len(string) == 1:
        return [" " + string, string + " "]
    return [string]


_MMMU_INDICATORS = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]


def mmmu_parse_open(response: str) -> list:
    """The candidate answers of an open response: the tail after the last key phrase of each sentence, plus every
    number in them, normalised (deduplicated; order does not matter to `mmmu_eval_open`)."""

    def key_subresponses(response):
        response = response.strip().strip(".").lower()
        sub_responses = re.split(r"\.\s(?=[A-Z])|\n", response)
        indicators = list(_MMMU_INDICATORS)
        key_responses = []
        for index, resp in enumerate(sub_responses):
            if index == len(sub_responses) - 1:
                indicators.extend(["="])
            shortest = None
            for indicator in indicators:
                if indicator in resp:
                    tail = resp.split(indicator)[-1].strip()
                    if not shortest or len(tail) < len(shortest):
                        shortest = tail
            if shortest and shortest.strip() not in [":", ",", ".", "!", "?", ";", ":", "'"]:
                key_responses.append(shortest)
        return key_responses or [response]

    key_responses = key_subresponses(response)
    pred_list = list(key_responses)
    for resp in key_responses:
        pred_list.extend(mmmu_extract_numbers(resp))
    normalized = []
    for pred in pred_list:
        normalized.extend(mmmu_normalize_str(pred))
    return list(dict.fromkeys(normalized))


def mmmu_eval_open(gold: str | list[str], preds: list) -> bool:
    """A text gold matches when it is a substring of a text prediction, a number when equal to one (2 decimals)."""
    golds = gold if isinstance(gold, list) else [gold]
    norm_answers = []
    for answer in golds:
        norm_answers.extend(mmmu_normalize_str(str(answer)))
    for pred in preds:
        if isinstance(pred, str):
            if any(isinstance(ans, str) and ans in pred for ans in norm_answers):
                return True
        elif pred in norm_answers:
            return True
    return False


# --------------------------------------------------------------------------------------------------
# RealWorldQA free answers (lmms_eval/tasks/realworldqa/utils.py)
# --------------------------------------------------------------------------------------------------


def realworldqa_open_match(pred: str, gold: str) -> bool:
    """Exact match after lower-casing, stripping and dropping one trailing period: no containment."""
    return pred.lower().strip().rstrip(".") == gold.strip().lower()


# --------------------------------------------------------------------------------------------------
# HallusionBench (lmms_eval/tasks/hallusion_bench/evaluate_hb.py, hb_aggregation_result_intern)
# --------------------------------------------------------------------------------------------------


def hallusion_accuracies(records: list[dict]) -> dict[str, float | None]:
    """aAcc (per question), fAcc (a figure counts when every question on it is right) and qAcc (a question counts when
    it is right on every figure it is asked about), in %. A record: category, subcategory, set_id, figure_id,
    question_id, correct (bool)."""
    if not records:
        return {"aAcc": None, "fAcc": None, "qAcc": None}

    def grouped(fields):
        groups: dict[str, list[bool]] = {}
        for r in records:
            key = "_".join(str(r[f]) for f in fields)
            groups.setdefault(key, []).append(bool(r["correct"]))
        return [min(v) for v in groups.values()]

    a = [bool(r["correct"]) for r in records]
    q = grouped(("category", "subcategory", "set_id", "question_id"))
    f = grouped(("category", "subcategory", "set_id", "figure_id"))
    return {
        "aAcc": round(100.0 * sum(a) / len(a), 2),
        "fAcc": round(100.0 * sum(f) / len(f), 2),
        "qAcc": round(100.0 * sum(q) / len(q), 2),
    }
