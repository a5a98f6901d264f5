"""VisPlay's pure logic: parsing, voting, grading, rewards, diversity clustering, band filtering.

Nothing here imports torch or verl, so it is fast to import, test and reuse. Names resolve lazily.
"""

import importlib

_EXPORTS = {
    "QuestionRecord": "parsing",
    "parse_question": "parsing",
    "extract_boxed": "parsing",
    "Vote": "voting",
    "majority_vote": "voting",
    "majority_vote_batch": "voting",
    "canonical_key": "grading",
    "answers_equivalent": "grading",
    "pairwise_bleu": "bleu",
    "repetition_penalty": "diversity",
    "cluster_labels": "diversity",
    "questioner_reward": "rewards",
    "reasoner_score": "rewards",
    "reasoner_score_batch": "rewards",
    "BandFilterResult": "filtering",
    "band_filter": "filtering",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
