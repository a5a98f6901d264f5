"""visplay: VisPlay (arXiv 2511.15661) self-evolving VLMs as a thin extension of verl."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERL_VERSION = (HERE / "REQUIRED_VERL.txt").read_text().strip()

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
    # GPU machines: verl's rollout engine and fused attention. Never needed by `make test`.
    "gpu": ["vllm", "flash-attn"],
    # Reference semantics the tests compare against, plus the tools `make quality` runs.
    "test": ["pytest", "pytest-asyncio", "nltk", "scikit-learn", "ruff"],
}

setup(
    name="verl_ext",
    version="0.1.0",
    description="VisPlay: self-evolving vision-language models from unlabeled images, on verl",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["verl_ext", "verl_ext.*"]),
    package_data={"verl_ext": ["config/*.yaml", "prompts/*.jinja"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras_require,
    entry_points={
        "console_scripts": ["visplay=verl_ext.cli:main"],
        # verl/__init__.py loads this group in every process that imports verl: VisPlay's fixes for verl 0.9.1.
        "verl.plugins": ["visplay = verl_ext.verl_plugin"],
    },
)
