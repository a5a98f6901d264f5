"""`python -m verl_ext.eval` end to end on a run directory with real (tiny) checkpoints and the benchmark fixtures:
greedy decoding of base, S_1, S_2 on all eight benchmarks, the table (markdown + CSV), per-item caching (a re-run
decodes nothing, a larger --limit decodes only the new items), and the LLM judge with a failure that is counted,
then retried on the next run only for that item."""

import csv
import json
import os
from pathlib import Path

import pytest

from verl_ext.eval import runner
from verl_ext.eval.__main__ import main
from verl_ext.eval.benchmarks import DEFAULT_BENCHMARKS
from verl_ext.tiny.benchmarks import benchmark_rows


@pytest.fixture
def count_generation(monkeypatch):
    calls = []
    real = runner.generate_for_checkpoint

    def counting(model, cfg, prompts, images, log=print):
        calls.append((Path(model).parent.name + "/" + Path(model).name, len(prompts)))
        return real(model, cfg, prompts, images, log)

    monkeypatch.setattr(runner, "generate_for_checkpoint", counting)
    return calls


def _rule(scores: dict) -> dict:
    return {
        b: {lab: (e["rule"]["score"], e["rule"]["n"]) for lab, e in per.items() if e["rule"]}
        for b, per in scores.items()
    }


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_eval_run_end_to_end_with_cache_and_judge(
    eval_run, private_cache, count_generation, scripted_endpoint, tmp_path, capsys
):
    out = eval_run / "eval"  # the default output folder of --run
    assert main(["--run", str(eval_run), "--limit", "2"]) == 0
    printed = capsys.readouterr().out
    assert "benchmark-shaped fixtures" in printed  # a test-kit run says loudly what it is evaluated on
    assert [n for _, n in count_generation] == [16, 16, 16]  # 8 benchmarks x 2 items, per checkpoint

    res = _results(out)
    assert [(c["label"], c["iteration"]) for c in res["checkpoints"]] == [("base", 0), ("iter_1", 1), ("iter_2", 2)]
    assert res["benchmarks"] == list(DEFAULT_BENCHMARKS) and res["base"] == "base" and res["judge"] is None
    assert res["generation"]["engine"] == "hf" and res["generation"]["max_new_tokens"] == 64  # the recipe's
    assert res["protocol"] == "official" and res["average"] == "macro"
    rule_scored = [b for b in DEFAULT_BENCHMARKS if b != "mmvet"]
    for label in ("base", "iter_1", "iter_2"):
        assert res["scores"]["mmvet"][label]["rule"] is None  # MM-Vet is judged only: no rule number
        for bench in rule_scored:
            cell = res["scores"][bench][label]["rule"]
            assert cell["n"] == 2 and 0.0 <= cell["score"] <= 100.0
        assert set(res["scores"]["hallusionbench"][label]["rule"]["metrics"]) == {"aAcc", "fAcc", "qAcc"}

    md = (out / "table.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert lines[0] == "| benchmark | scorer | base | iter_1 | iter_2 | items |"  # not "base (base)"
    assert len(lines) == 2 + 7 + 2 + 1 and "**average (7 benchmarks, official protocol)**" in lines[-1]
    assert "| HallusionBench fAcc | rule |" in md and "| HallusionBench qAcc | rule |" in md
    assert "Protocol: official" in md
    assert "(+" in md or "(-" in md or "(+0.0)" in md  # deltas to the base
    rows = list(csv.DictReader(open(out / "table.csv")))
    expected = [b for b in rule_scored for b in ([b, f"{b}:fAcc", f"{b}:qAcc"] if b == "hallusionbench" else [b])]
    assert [r["benchmark"] for r in rows] == [*expected, "average"]
    assert rows[-1]["base_delta"] == "" and rows[-1]["iter_2_n"] == "14"
    assert float(rows[0]["iter_1_delta"]) == pytest.approx(float(rows[0]["iter_1"]) - float(rows[0]["base"]))

    # A re-run decodes nothing; a larger limit decodes only the new items.
    count_generation.clear()
    assert main(["--run", str(eval_run), "--limit", "2"]) == 0
    again = _results(out)["scores"]
    assert count_generation == [] and _rule(again) == _rule(res["scores"])
    assert all(again[b][lab]["rule"]["new"] == 0 for b in again for lab in again[b] if again[b][lab]["rule"])
    assert main(["--run", str(eval_run), "--limit", "3"]) == 0
    assert [n for _, n in count_generation] == [8, 8, 8]

    # The judge: every verdict CORRECT except one item whose calls always fail (counted, never guessed).
    failing = benchmark_rows("hallusionbench")[0]["question"]

    def script(body, i):
        return (503, "down") if failing in body["messages"][0]["content"] else (200, "CORRECT")

    with scripted_endpoint(script) as ep:
        cfg = tmp_path / "eval.yaml"
        cfg.write_text(f"judge: {{model: judge-1, base_url: '{ep.url}', max_attempts: 2, backoff_s: 0}}\n")
        os.environ["VISPLAY_JUDGE_API_KEY"] = "sk-secret-for-test"
        try:
            count_generation.clear()
            args = ["--run", str(eval_run), "--limit", "2", "--benchmarks", "hallusionbench,mmstar", "--config"]
            assert main([*args, str(cfg)]) == 0
            first_calls = len(ep.requests)
            assert main([*args, str(cfg)]) == 0
        finally:
            del os.environ["VISPLAY_JUDGE_API_KEY"]
    assert count_generation == []  # responses came from the cache
    assert first_calls == 3 * (2 * 2 - 1) + 3 * 2  # 3 checkpoints: 3 good items + 1 failing item tried twice
    assert len(ep.requests) - first_calls == 3 * 2  # the re-run asks again only about the failed item
    res = _results(out)
    for label in ("base", "iter_1", "iter_2"):
        hb, ms = res["scores"]["hallusionbench"][label]["judge"], res["scores"]["mmstar"][label]["judge"]
        assert (hb["score"], hb["n"], hb["failed"], hb["total"]) == (100.0, 1, 1, 2)
        assert (ms["score"], ms["n"], ms["failed"]) == (100.0, 2, 0)
        assert "HTTP 503" in hb["errors"][0]
    md = (out / "table.md").read_text()
    assert "| HallusionBench | judge | 100.0 | 100.0 (+0.0) | 100.0 (+0.0) | 1/2 |" in md
    assert "Judge: judge-1" in md
    for path in out.rglob("*"):  # the key is sent in a header and written nowhere
        if path.is_file():
            assert b"sk-secret-for-test" not in path.read_bytes(), path


def test_eval_models_by_path_and_errors(tiny_vlm_path, private_cache, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--model", f"tiny={tiny_vlm_path}", "--data-root", "testkit", "--benchmarks", "mmstar,mathverse"]
    assert main([*args, "--limit", "1", "--out", str(out), "--no-judge"]) == 0
    res = _results(out)
    assert [c["label"] for c in res["checkpoints"]] == ["tiny"] and res["benchmarks"] == ["mmstar", "mathverse"]
    assert "| benchmark | scorer | tiny (base) | items |" in (out / "table.md").read_text()

    assert main(["--list"]) == 0 and "VisNumBench" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["--run", str(tmp_path / "nope")]) == 2
    assert main([*args, "--benchmarks", "mathvista", "--out", str(out)]) == 2
    assert "unknown benchmark 'mathvista'" in capsys.readouterr().err
    assert main(["--model", str(tiny_vlm_path), "--data", f"mmstar={tmp_path / 'missing'}", "--out", str(out)]) == 2
    assert main([*args, "--judge-model", "x", "--out", str(out)]) == 2  # a judge model without an endpoint


def test_protocol_visplay_on_the_references_data_layout(eval_run, private_cache, scripted_endpoint, monkeypatch):
    """`--protocol visplay` on fixtures in the layout of the reference's benchmark copies (problem / answer / images,
    MLLM_test split by file_name): its solver prompt, its extraction, its binary judge on the extracted answer, and
    the micro average. The model is replaced by a canned response ("\\boxed{B}") so every number is known."""
    from verl_ext.eval.protocol_visplay import SOLVER_SUFFIX, VISPLAY_SETS, normalize_answer
    from verl_ext.tiny.benchmarks import visplay_rows

    prompts_seen = []

    def canned(model, cfg, prompts, images, log=print):
        prompts_seen.extend(prompts)
        return ["<think>hmm</think> so \\boxed{B}" for _ in prompts]

    monkeypatch.setattr(runner, "generate_for_checkpoint", canned)

    def script(body, i):
        user = body["messages"][-1]["content"]
        assert body["messages"][0]["role"] == "system"
        return 200, "1" if "Correct answer: B." in user else "0"

    with scripted_endpoint(script) as ep:
        args = ["--run", str(eval_run), "--protocol", "visplay", "--limit", "2"]
        assert main([*args, "--judge-model", "glm", "--judge-url", ep.url]) == 0
    out = eval_run / "eval-visplay"
    res = _results(out)
    assert res["protocol"] == "visplay" and res["average"] == "micro" and res["benchmarks"] == list(VISPLAY_SETS)
    assert prompts_seen and all(p.endswith(SOLVER_SUFFIX) and "<image>" not in p for p in prompts_seen)
    golds = {name: [r["answer"] for r in visplay_rows(name)[:2]] for name in VISPLAY_SETS}
    right = {name: sum(normalize_answer(g) == "B" for g in gs) for name, gs in golds.items()}
    for name in VISPLAY_SETS:
        cell = res["scores"][name]["base"]
        assert cell["rule"]["score"] == 50.0 * right[name]
        assert cell["judge"]["score"] == 50.0 * right[name] and cell["judge"]["failed"] == 0
    # the judge saw the extracted answer "B", never the question; identical prompts are asked once per checkpoint
    assert all("Answer to be judged: B." in body["messages"][-1]["content"] for _, body in ep.requests)
    md = (out / "table.md").read_text()
    micro = round(100.0 * sum(right.values()) / (2 * len(VISPLAY_SETS)), 1)
    assert f"**micro average ({len(VISPLAY_SETS)} benchmarks, visplay protocol)** | rule | {micro:.1f}" in md
    assert "Protocol: visplay" in md
    assert (eval_run / "eval" / "results.json").is_file()  # the official results are left alone
