"""Make a CUDA-built torchvision importable beside a CPU-only torch.

transformers' Qwen2.5-VL processor needs a video processor, which needs torchvision; the only
torchvision wheel matching torch 2.13 is CUDA-built, so its `_C.so` fails to load on a CPU torch and
`import torchvision` dies on `operator torchvision::nms does not exist` (its fake-tensor registrations
assume the ops exist). Once torchvision is installed, transformers imports it eagerly, which breaks
`import trl` and verl's entry point as well.

The fix: just before torchvision is first imported, try its real `_C` library; only if that fails,
define the `torchvision::nms` / `torchvision::qnms` schemas with `torch.library` so the package
imports (its detection ops stay unavailable, as torchvision itself reports; nothing here uses them).
A GPU machine with a working torchvision is untouched.

`install_hook()` arms this for the current process. `python -m verl_ext.compat.torchvision_shim install`
writes a `.pth` file into site-packages so that every new interpreter (subprocesses, Ray workers)
arms it at start-up; importing this module costs nothing (torch is only imported when torchvision is).
"""

from __future__ import annotations

import argparse
import glob
import importlib.abc
import importlib.util
import os
import sys
import sysconfig

PTH_NAME = "verl_ext_torchvision_shim.pth"
# One line: a .pth file executes lines that start with `import`. It must never break start-up,
# even after verl_ext is uninstalled.
PTH_LINE = (
    "import sys; exec('try:\\n import verl_ext.compat.torchvision_shim as _vx\\n _vx.install_hook()\\n"
    "except Exception:\\n pass')\n"
)

_LIBRARIES = []  # keep torch.library.Library objects alive: dropping them removes the definitions


def _real_extension_loads(package_dir: str) -> bool:
    import torch

    candidates = glob.glob(os.path.join(package_dir, "_C*.so")) + glob.glob(os.path.join(package_dir, "_C*.pyd"))
    for candidate in sorted(candidates):
        try:
            torch.ops.load_library(candidate)
            return True
        except (OSError, RuntimeError):
            continue
    return False


def _op_defined(qualname: str) -> bool:
    import torch

    try:
        torch._C._dispatch_find_schema_or_throw(qualname, "")
        return True
    except RuntimeError:
        return False


def define_missing_ops(package_dir: str | None = None) -> str:
    """Ensure `torchvision::nms`/`qnms` exist. Returns "native", "shimmed" or "absent"."""
    if package_dir is None:
        spec = importlib.util.find_spec("torchvision")
        if spec is None or not spec.submodule_search_locations:
            return "absent"
        package_dir = list(spec.submodule_search_locations)[0]
    if _real_extension_loads(package_dir):
        return "native"
    import torch

    if _op_defined("torchvision::nms"):
        return "shimmed"
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARIES.append(lib)
    return "shimmed"


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """One-shot finder: runs `define_missing_ops` when `torchvision` is first imported, then steps aside."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "torchvision":
            return None
        remove_hook()
        try:
            define_missing_ops()
        except Exception as exc:  # never turn an import into a different failure
            print(f"verl_ext: torchvision shim skipped: {exc!r}", file=sys.stderr)
        return None  # the normal finders import the real package


def install_hook() -> None:
    """Arm the shim in this process (no-op if torchvision is already imported or the hook is armed)."""
    if "torchvision" in sys.modules or any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionFinder())


def remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionFinder)]


def pth_path() -> str:
    return os.path.join(sysconfig.get_paths()["purelib"], PTH_NAME)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["install", "uninstall", "status"])
    args = parser.parse_args(argv)
    path = pth_path()
    if args.action == "install":
        with open(path + ".tmp", "w") as f:
            f.write(PTH_LINE)
        os.replace(path + ".tmp", path)
        print(f"installed {path}")
    elif args.action == "uninstall":
        if os.path.exists(path):
            os.remove(path)
        print(f"removed {path}")
    else:
        print(f"{path}: {'present' if os.path.exists(path) else 'absent'}")
        install_hook()
        try:
            import torchvision

            print(f"torchvision {torchvision.__version__} imports")
        except ImportError:
            print("torchvision not installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
