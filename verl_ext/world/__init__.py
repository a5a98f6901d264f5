"""A controlled image world with hidden ground truth, to measure whether the VisPlay loop improves a model without
labels: procedural scenes, a question grammar with an oracle (measurement only), seed/eval/unlabeled sets, the
experiment runner with its two controls (`python -m verl_ext.world`).
"""

from .grammar import TEMPLATES, OracleResult, instantiate, match, oracle
from .scenes import make_scene, render, scene_for_id

__all__ = ["TEMPLATES", "OracleResult", "instantiate", "make_scene", "match", "oracle", "render", "scene_for_id"]
