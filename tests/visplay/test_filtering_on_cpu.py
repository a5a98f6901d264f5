import math

import pytest

from verl_ext.visplay import BandFilterResult, band_filter
from verl_ext.visplay.filtering import PAPER_BAND, REFERENCE_BAND, filter_reason
from verl_ext.visplay.records import FILTER_REASONS


def rec(p, question="What is shown?", label="12"):
    return {"question": question, "pseudo_label": label, "confidence": p}


def test_band_constants():
    assert PAPER_BAND == (0.25, 0.75)
    assert REFERENCE_BAND == (0.3, 0.8)


def test_reference_band_with_m10_fractions():
    # k / 10 in floating point: 3/10 == 0.30000000000000004 > 0.3 but 0.1 * 3 etc. may land either side.
    records = [rec(k / 10) for k in range(11)] + [rec(0.1 * 3), rec(0.1 * 8), rec(1 - 0.7), rec(0.7 + 0.1)]
    result = band_filter(records, *REFERENCE_BAND)
    kept = [r["confidence"] for r in result.kept]
    assert kept == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.3, 0.8, 0.3, 0.8])
    assert result.reasons[:11] == ["too_hard"] * 3 + ["kept"] * 6 + ["too_easy"] * 2


def test_paper_band_with_m10_and_m8():
    reasons = [filter_reason(rec(k / 10)) for k in range(11)]
    assert reasons == ["too_hard"] * 3 + ["kept"] * 5 + ["too_easy"] * 3
    reasons = [filter_reason(rec(k / 8)) for k in range(9)]
    assert reasons == ["too_hard"] * 2 + ["kept"] * 5 + ["too_easy"] * 2  # 2/8 and 6/8 are exactly on the edges


def test_order_of_checks():
    assert filter_reason({"question": None, "pseudo_label": None, "confidence": 0.5}) == "unparsable"
    assert filter_reason({"question": "", "pseudo_label": "1", "confidence": 0.5}) == "unparsable"
    assert filter_reason({"question": "  \n", "pseudo_label": "1", "confidence": 0.5}) == "unparsable"
    assert filter_reason({"question": "Q", "pseudo_label": None, "confidence": 0.0}) == "no_answer"
    assert filter_reason({"question": "Q", "pseudo_label": " ", "confidence": 0.5}) == "no_answer"
    assert filter_reason(rec(0.9)) == "too_easy"
    assert filter_reason(rec(0.1)) == "too_hard"
    assert filter_reason(rec(0.5)) == "kept"


@pytest.mark.parametrize("record", [None, "a string", 3, ["question"], {"pseudo_label": "1", "confidence": 0.5}])
def test_bad_records_are_unparsable(record):
    assert filter_reason(record) == "unparsable"


@pytest.mark.parametrize("confidence", [None, math.nan, math.inf, "0.5x", True])
def test_unusable_confidence_is_no_answer(confidence):
    assert filter_reason(rec(confidence)) == "no_answer"


def test_numpy_like_confidences_and_strings():
    class Scalar:
        def __float__(self):
            return 0.5

    assert filter_reason(rec(Scalar())) == "kept"
    assert filter_reason(rec("0.5")) == "no_answer"  # a string is a schema error, not a confidence


def test_result_counts_and_alignment():
    records = [rec(0.5), rec(0.9), {"question": None}, rec(0.1), rec(0.5, label=None), rec(0.6)]
    result = band_filter(records)
    assert isinstance(result, BandFilterResult)
    assert result.kept == [records[0], records[5]]
    assert result.kept[0] is records[0]  # the records themselves, not copies
    assert result.reasons == ["kept", "too_easy", "unparsable", "too_hard", "no_answer", "kept"]
    assert result.counts == {"kept": 2, "too_easy": 1, "too_hard": 1, "no_answer": 1, "unparsable": 1, "too_long": 0}
    assert list(result.counts) == list(FILTER_REASONS)


def test_empty_input_has_all_zero_counts():
    result = band_filter([])
    assert result.kept == [] and result.reasons == []
    assert result.counts == dict.fromkeys(FILTER_REASONS, 0)


def test_accepts_generators():
    assert band_filter(rec(p / 4) for p in range(5)).reasons == ["too_hard", "kept", "kept", "kept", "too_easy"]


@pytest.mark.parametrize(
    "low, high", [(0.8, 0.3), (-0.1, 0.5), (0.5, 1.1), (math.nan, 0.5), (0.2, math.nan), ("a", 0.5), (None, 0.5)]
)
def test_rejects_bad_band(low, high):
    with pytest.raises(ValueError, match="band"):
        band_filter([rec(0.5)], low, high)
    with pytest.raises(ValueError, match="band"):
        filter_reason(rec(0.5), low, high)


def test_degenerate_bands_are_allowed():
    assert band_filter([rec(0.5), rec(0.6)], 0.5, 0.5).reasons == ["kept", "too_easy"]
    assert band_filter([rec(0.0), rec(1.0)], 0.0, 1.0).reasons == ["kept", "kept"]
