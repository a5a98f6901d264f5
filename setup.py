"""visplay: VisPlay (arXiv 2511.15661) self-evolving VLMs as a thin extension of verl."""

import runpy
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERL_VERSION = (HERE / "REQUIRED_VERL.txt").read_text().strip()
# The engine versions verl declares for its own vllm extra (stdlib-only module; see its docstring).
GPU_STACK = runpy.run_path(str(HERE / "verl_ext" / "compat" / "gpu_stack.py"))

install_requires = [
    f"verl[verl-core]=={VERL_VERSION}",
    "transformers>=5.5.3,<5.11",  # the range verl 0.9.1 accepts
    "trl==1.16.0",
    "torch>=2.6",
    "torchvision",
    "qwen-vl-utils",
    "ray",
    "hydra-core",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "pillow",
    "jinja2",
    "math-verify",
    "tqdm",
    "matplotlib",
]

extras_require = {
    # GPU machines: verl's rollout engine with the torch/transformers it is built against, as verl pins them.
    # flash-attn is installed after these, without build isolation (`make install-gpu`). Never needed by `make test`.
    "gpu": GPU_STACK["gpu_requirements"](),
    # Reference semantics the tests compare against, plus the tools `make quality` runs.
    "test": ["pytest", "pytest-asyncio", "nltk", "scikit-learn", "ruff"],
    # `make mutate`: mutation testing of the pure core (tools/mutate.py drives mutmut 3).
    "dev": ["mutmut>=3.3,<4"],
}

setup(
    name="verl_ext",
    version="0.1.0",
    description="VisPlay: self-evolving vision-language models from unlabeled images, on verl",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["verl_ext", "verl_ext.*"]),
    package_data={"verl_ext": ["plugins/config/*.yaml", "prompts/*.jinja"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras_require,
    entry_points={
        "console_scripts": ["visplay=verl_ext.cli:main"],
        # verl/__init__.py loads this group in every process that imports verl: VisPlay's fixes for verl 0.9.1.
        "verl.plugins": ["visplay = verl_ext.plugins.verl_fixes"],
    },
)
