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
