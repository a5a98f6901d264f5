"""visplay: self-evolving vision-language models from unlabeled images, as plugins for verl.

`verl_ext.visplay` holds the pure algorithm (no torch/verl imports); the rest is thin verl glue.
"""

__version__ = "0.1.0"
