"""The torchvision shim: torchvision, trl and verl import in fresh interpreters; the .pth never breaks start-up."""

import subprocess
import sys

from verl_ext.compat import torchvision_shim


def _run(code, *flags):
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, timeout=300)


def test_pth_file_is_installed_in_this_environment():
    with open(torchvision_shim.pth_path()) as f:
        assert f.read() == torchvision_shim.PTH_LINE


def test_fresh_interpreter_imports_torchvision_trl_and_verl_entry_point():
    proc = _run("import torchvision, trl, verl.trainer.main_ppo; print('ok', torchvision.__version__)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok ")


def test_ops_are_native_or_shimmed_never_missing():
    proc = _run(
        "import torchvision, torch\n"
        "torch._C._dispatch_find_schema_or_throw('torchvision::nms', '')\n"
        "torch._C._dispatch_find_schema_or_throw('torchvision::qnms', '')\n"
        "from verl_ext.compat import torchvision_shim as s\n"
        "print(s.define_missing_ops())"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() in {"native", "shimmed"}


def test_pth_line_is_harmless_when_verl_ext_is_not_importable():
    # -S: no site-packages, so verl_ext cannot be imported; the line must swallow that silently.
    proc = _run(torchvision_shim.PTH_LINE, "-S")
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_hook_is_one_shot_and_idempotent():
    before = list(sys.meta_path)
    torchvision_shim.install_hook()  # torchvision may already be imported here: then it must not arm at all
    torchvision_shim.install_hook()
    armed = [f for f in sys.meta_path if isinstance(f, torchvision_shim._TorchvisionFinder)]
    assert len(armed) <= 1
    torchvision_shim.remove_hook()
    try:
        assert not any(isinstance(f, torchvision_shim._TorchvisionFinder) for f in sys.meta_path)
    finally:
        sys.meta_path[:] = before


def test_install_and_uninstall_write_and_remove_the_pth(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torchvision_shim.sysconfig, "get_paths", lambda: {"purelib": str(tmp_path)})
    assert torchvision_shim.main(["install"]) == 0
    target = tmp_path / torchvision_shim.PTH_NAME
    assert target.read_text() == torchvision_shim.PTH_LINE
    assert not list(tmp_path.glob("*.tmp"))
    assert torchvision_shim.main(["uninstall"]) == 0
    assert not target.exists()


def test_finder_ignores_other_modules_and_stays_armed():
    before = list(sys.meta_path)  # the .pth-armed finder must survive this test for later imports of torchvision
    finder = torchvision_shim._TorchvisionFinder()
    sys.meta_path.insert(0, finder)
    try:
        assert finder.find_spec("numpy", None) is None
        assert finder in sys.meta_path
    finally:
        sys.meta_path[:] = before
