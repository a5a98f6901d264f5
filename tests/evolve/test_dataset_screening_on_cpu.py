"""What a verl stage's datasets dropped (prompts over data.max_prompt_length, bad images) reaches the stage's summary
in the manifest, read from the line the datasets log."""

from verl_ext.evolve.verl_backend import dataset_screening


def test_screening_lines_become_the_stage_summary(tmp_path):
    log = tmp_path / "stage.log"
    log.write_text(
        "(TaskRunner pid=1) WARNING ReasonerDataset: kept 3 of 9 rows; skipped {'no_question': 1}\n"
        "noise\n"
        "(TaskRunner pid=1) WARNING ReasonerDataset: kept 7 of 9 rows; skipped {'prompt_too_long': 2}\n"
        "WARNING QuestionerDataset: kept 5 of 6 rows; skipped {'corrupt': 1}\n"
    )
    assert dataset_screening(log) == {
        "ReasonerDataset": {"rows": 9, "kept": 7, "skipped": {"prompt_too_long": 2}},
        "QuestionerDataset": {"rows": 6, "kept": 5, "skipped": {"corrupt": 1}},
    }
    assert dataset_screening(tmp_path / "missing.log") == {}
