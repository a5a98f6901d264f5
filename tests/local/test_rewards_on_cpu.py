"""The TRL reward functions return exactly the core's rewards, recomputed here from the same reasoner samples."""

import pytest

from verl_ext.visplay import majority_vote, questioner_reward, reasoner_score, repetition_penalty

pytestmark = pytest.mark.slow  # uses the session's warmed tiny VLM as the frozen reasoner

QUESTIONS = [
    "<type>numerical</type><question>How many circles are in the image?</question><answer>3</answer>",
    "<type>numerical</type><question>How many circles are in the image?</question><answer>4</answer>",  # repeat
    "no tags at all",
    "<type>multiple choice</type><question>Which bar is the tallest? A. red B. blue C. green D. gray</question>"
    "<answer>B</answer>",
    "<type>numerical</type><question></question><answer>2</answer>",  # empty question: unparsable
    "<type>regression</type><question>Estimate the height of the red bar.</question><answer>7</answer>",
]


@pytest.fixture(scope="module")
def reasoner(warmed):
    from verl_ext.local.models import load_model, load_processor

    path, _ = warmed
    return load_model(path), load_processor(path, 3136, 12544)


@pytest.mark.parametrize("mode, lam", [("paper", 1.0), ("reference", 0.5)])
def test_questioner_reward_equals_core_reward(reasoner, synthetic_images, mode, lam):
    from verl_ext.local.rewards import QuestionerReward

    model, processor = reasoner
    m = 4
    reward = QuestionerReward(model, processor, m=m, top_k=40, max_new_tokens=48, mode=mode, lam=lam, seed=3)
    images = [synthetic_images[i % len(synthetic_images)][0] for i in range(len(QUESTIONS))]
    completions = [[{"role": "assistant", "content": text}] for text in QUESTIONS]  # TRL's conversational form
    logged = {}
    rewards = reward(
        prompts=[None] * len(QUESTIONS), completions=completions, image=images, log_metric=logged.__setitem__
    )

    responses = reward.last.reasoner_responses
    valid = [len(r) == m for r in responses]
    assert valid == [True, True, False, True, False, True]  # the reasoner is only asked about parsed questions
    # Independent recomputation from the reasoner's samples with the core functions.
    p = [majority_vote(r).confidence if v else 0.0 for r, v in zip(responses, valid, strict=True)]
    questions = [
        "How many circles are in the image?",
        "How many circles are in the image?",
        "",
        "Which bar is the tallest? A. red B. blue C. green D. gray",
        "",
        "Estimate the height of the red bar.",
    ]
    pen = repetition_penalty(questions)
    expected = [questioner_reward(*args, mode=mode, lam=lam) for args in zip(p, pen, valid, strict=True)]
    assert rewards == pytest.approx(expected, abs=1e-12)
    assert pen[0] == pen[1] > pen[5]  # the repeated question shares its cluster's penalty
    assert any(c > 0.0 for c in p)  # the warmed reasoner boxes answers: the votes are real
    assert logged["visplay/parse_rate"] == pytest.approx(4 / 6)
    assert logged["visplay/confidence"] == pytest.approx(sum(p[i] for i in (0, 1, 3, 5)) / 4)
    assert logged["visplay/penalty"] == pytest.approx(sum(pen[i] for i in (0, 1, 3, 5)) / 4)


def test_reasoner_reward_equals_core_score():
    from verl_ext.local.rewards import ReasonerReward

    texts = ["<think>3 circles</think> \\boxed{3}", "\\boxed{4}", "no box", "\\boxed{B}", "\\boxed{0.5}"]
    labels = ["3", "3", "3", "B", "\\frac{1}{2}"]
    logged = {}
    rewards = ReasonerReward(0.1)(
        prompts=[None] * 5, completions=[[{"role": "assistant", "content": t}] for t in texts],
        pseudo_label=labels, log_metric=logged.__setitem__,
    )  # fmt: skip
    assert rewards == pytest.approx([reasoner_score(t, y, 0.1)["overall"] for t, y in zip(texts, labels, strict=True)])
    assert rewards == pytest.approx([1.0, 0.1, 0.0, 1.0, 1.0])
    assert logged == {"visplay/accuracy": pytest.approx(3 / 5), "visplay/format": pytest.approx(4 / 5)}


def test_a_resumed_stage_keeps_one_metrics_row_per_step(tmp_path):
    """Rows the killed attempt logged after its last checkpoint are dropped, as is a line cut by the kill."""
    import json

    from verl_ext.local.grpo import trim_metrics

    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": s / 10} for s in (1, 2, 3, 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "lo')
    trim_metrics(path, 2)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
    trim_metrics(path, 0)  # a fresh start: nothing of the killed attempt stays
    assert path.read_text() == ""
    trim_metrics(tmp_path / "absent.jsonl", 3)  # nothing to trim
    assert not (tmp_path / "absent.jsonl").exists()
