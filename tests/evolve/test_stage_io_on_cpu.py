"""The image stage's sources and the subprocess runner of the verl backend."""

import sys

import pyarrow.parquet as pq
import pytest

from verl_ext.evolve.backend import Command, CommandFailed, run_command
from verl_ext.evolve.images import prepare_images
from verl_ext.evolve.recipe import ImagesConfig
from verl_ext.visplay.records import IMAGE_COLUMNS


def test_images_from_folder_and_parquet(image_folder, image_parquet, tmp_path):
    out = tmp_path / "a.parquet"
    assert prepare_images(ImagesConfig(source="folder", path=str(image_folder)), out, seed=0)["images"] == 8
    table = pq.read_table(out)
    assert tuple(table.column_names) == IMAGE_COLUMNS
    assert table.column("id").to_pylist() == sorted(p.name for p in image_folder.glob("*.png"))

    cfg = ImagesConfig(source="parquet", path=str(image_parquet), max_images=3)
    prepare_images(cfg, tmp_path / "b.parquet", seed=7)
    prepare_images(cfg, tmp_path / "c.parquet", seed=7)
    b = pq.read_table(tmp_path / "b.parquet")
    assert b.num_rows == 3 and b.equals(pq.read_table(tmp_path / "c.parquet"))  # seeded subsample is stable
    assert set(b.column("id").to_pylist()) <= set(pq.read_table(image_parquet).column("id").to_pylist())

    with pytest.raises(ValueError, match="images.image_column: 'picture'"):
        prepare_images(ImagesConfig(source="parquet", path=str(image_parquet), image_column="picture"), out, 0)
    with pytest.raises(FileNotFoundError, match="images.path"):
        prepare_images(ImagesConfig(source="folder", path=str(tmp_path / "nope")), out, 0)


def test_bad_images_are_skipped_counted_and_named(image_folder, tmp_path):
    """A 0-byte PNG, a text file named .jpg, a truncated PNG and an unreadable file used to be packed as images (and
    killed the questioner stage later, naming no file); a non-UTF-8 file name failed the stage."""
    import os
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    good = sorted(folder.glob("*.png"))
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image")
    (folder / "cut.png").write_bytes(good[0].read_bytes()[:60])
    locked = folder / "locked.png"
    shutil.copy(good[1], locked)
    locked.chmod(0)
    latin1 = os.fsencode(folder) + b"/caf\xe9.png"  # a Latin-1 name: not valid UTF-8
    with open(latin1, "wb") as f:
        f.write(good[2].read_bytes())
    out = tmp_path / "images.parquet"
    try:
        summary = prepare_images(ImagesConfig(source="folder", path=str(folder)), out, seed=0)
    finally:
        locked.chmod(0o644)
    expected_locked = {} if os.geteuid() == 0 else {"unreadable": 1}  # root reads a file with mode 000
    skipped = {"corrupt": 2, "missing": 1, **expected_locked}
    assert summary["skipped"] == skipped and summary["images"] == len(good) + (not expected_locked) + 1  # + café
    assert {"empty.png (missing)", "notes.jpg (corrupt)", "cut.png (corrupt)"} <= set(summary["skipped_examples"])
    ids = pq.read_table(out).column("id").to_pylist()
    assert "caf\\xe9.png" in ids and "empty.png" not in ids and "cut.png" not in ids

    bad_only = tmp_path / "bad"
    bad_only.mkdir()
    (bad_only / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match="none of the 1 images .* is usable: {'missing': 1}"):
        prepare_images(ImagesConfig(source="folder", path=str(bad_only)), out, seed=0)


def test_run_command_logs_and_fails_loudly(tmp_path):
    log = tmp_path / "logs/stage.log"
    run_command(Command([sys.executable, "-c", "print('hello from a stage')"], "ok"), log, echo=False)
    with pytest.raises(CommandFailed, match="broken stage exited with status 3"):
        run_command(Command([sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"], "broken stage"), log,
                    echo=False)  # fmt: skip
    text = log.read_text()
    assert "hello from a stage" in text and "bye" in text


def test_render_is_pasteable():
    cmd = Command([sys.executable, "-m", "mod", "sub", "--flag", "v 1", "a.b=[x,y]"], env={"X": "1"})
    text = cmd.render()
    assert text.startswith(f"X=1 {sys.executable} -m mod")
    import shlex

    assert shlex.split(text.replace("\\\n", " "))[1:] == cmd.argv


def test_loop_process_never_imports_torch_verl_or_vllm(tmp_path):
    """The loop only builds and runs commands: a dry run of a real recipe (its checks included) imports none of the
    heavy engines."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"not decoded by the checks")  # the dry run's image check passes
    env = {**os.environ, "IMAGE_PATH": str(images)}
    for var in ("IMAGE_SOURCE", "BASE_MODEL", "HF_HUB_OFFLINE"):  # a hub id not cached offline is a FAIL verdict
        env.pop(var, None)
    code = (
        "import sys, io, contextlib\n"
        "from verl_ext.cli import evolve as main\n"
        "import verl_ext.inference.offline, verl_ext.evolve.verl_backend\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--recipe', 'recipes/qwen2.5-vl-7b.yaml', '--dry-run', '--run-dir', sys.argv[1]]) == 0\n"
        "heavy = sorted(m for m in ('torch', 'verl', 'vllm', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    run_dir = str(tmp_path / "never-created")
    done = subprocess.run([sys.executable, "-c", code, run_dir], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_slurm_script_is_valid_bash():
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "recipes/slurm/evolve.sbatch"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


FORWARD_SCRIPT = """
import sys, threading, os, signal, time
from pathlib import Path
from verl_ext.evolve.backend import Command, run_command
from verl_ext.evolve.loop import Terminated, sigterm_interrupts
code = "import time, pathlib, sys; pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
child = [sys.executable, "-c", code, sys.argv[1]]
with sigterm_interrupts():
    try:
        run_command(Command(child, "sleeper"), Path(sys.argv[2]), echo=False)
    except Terminated as exc:
        print("TERMINATED", exc)
"""


def test_a_signal_forwarded_to_a_stage_command_interrupts_the_loop(tmp_path):
    """SIGTERM reaches the stage's process group and then the loop itself: an interruption, not a failed command."""
    import os
    import signal
    import subprocess
    import time

    ready, log, script = tmp_path / "ready", tmp_path / "stage.log", tmp_path / "loop.py"
    script.write_text(FORWARD_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(ready), str(log)], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGTERM)  # the process this test started, by pid
    finally:
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and "TERMINATED signal SIGTERM" in out
