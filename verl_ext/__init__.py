"""visplay: self-evolving vision-language models from unlabeled images, as plugins for verl.

`verl_ext.visplay` holds the pure algorithm (no torch/verl imports), `verl_ext.plugins` the verl recipe;
ARCHITECTURE.md gives every package's layer.
"""

__version__ = "0.1.0"
