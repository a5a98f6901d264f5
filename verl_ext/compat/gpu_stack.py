"""The GPU stack this project installs (`make install-gpu`): the engine versions verl declares for itself.

verl 0.9.1's own `vllm` extra pins vllm together with the torch, torchvision and transformers it was built against,
and its flash-attn extra pins flash-attn. An unpinned `vllm` resolves to the newest release, which pins its own
torch/transformers and replaces the machine's; an unpinned `flash-attn` builds from source under pip's build isolation
and fails with "No module named 'torch'". So `setup.py`'s `gpu` extra takes `GPU_PINS` from here (no imports beyond
the standard library, so setup.py can run this file before anything is installed) and the Makefile installs
`FLASH_ATTN` afterwards with `--no-build-isolation`, against the torch already there. A CPU test checks these pins
against verl's installed metadata.

    python -m verl_ext.compat.gpu_stack --flash-attn   # prints the flash-attn requirement (used by make install-gpu)
    python -m verl_ext.compat.gpu_stack                # pins vs installed vs verl's declared, one line each
"""

from __future__ import annotations

import re
import sys

VERL_VLLM_EXTRA = "vllm"
VERL_FLASH_ATTN_EXTRA = "flash-attn-cu130torch211"  # verl 0.9.1's flash-attn extra (CUDA 13.0, torch 2.11)

# Installed by the `gpu` extra, in one resolve: exactly what verl 0.9.1's `vllm` extra declares.
GPU_PINS = {
    "vllm": "0.24.0",
    "torch": "2.11.0",
    "torchvision": "0.26.0",
    "transformers": "5.9.0",
}
# Installed after them, without build isolation (it compiles against, or picks a prebuilt wheel for, that torch).
FLASH_ATTN = ("flash-attn", "2.8.3")

_PIN = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+?)\s*==\s*([^;\s]+)\s*;\s*extra\s*==\s*['\"]([^'\"]+)['\"]\s*$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def gpu_requirements() -> list[str]:
    """The `gpu` extra of setup.py."""
    return [f"{name}=={version}" for name, version in GPU_PINS.items()]


def flash_attn_requirement() -> str:
    return f"{FLASH_ATTN[0]}=={FLASH_ATTN[1]}"


def declared_pins(requires: list[str] | None, extras: tuple[str, ...]) -> dict[str, str]:
    """`name -> version` of the `name==version; extra == "X"` lines of a distribution's Requires-Dist, for `extras`."""
    out: dict[str, str] = {}
    for line in requires or []:
        m = _PIN.match(line)
        if m and m.group(3) in extras:
            out[normalize(m.group(1))] = m.group(2)
    return out


def verl_declared_pins() -> dict[str, str]:
    """What the installed verl declares for its vllm and flash-attn extras (empty when verl is not installed)."""
    from importlib import metadata

    try:
        requires = metadata.requires("verl")
    except metadata.PackageNotFoundError:
        return {}
    return declared_pins(requires, (VERL_VLLM_EXTRA, VERL_FLASH_ATTN_EXTRA))


def wanted_pins() -> dict[str, str]:
    """Every package of the GPU stack and the version this project installs."""
    return {**{normalize(k): v for k, v in GPU_PINS.items()}, normalize(FLASH_ATTN[0]): FLASH_ATTN[1]}


def installed_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--flash-attn"]:
        print(flash_attn_requirement())
        return 0
    if argv == ["--requirements"]:
        print("\n".join(gpu_requirements()))
        return 0
    declared = verl_declared_pins()
    for name, version in wanted_pins().items():
        print(f"{name}: pinned {version}, installed {installed_version(name)}, verl declares {declared.get(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
