"""The VisPlay evolution loop: YAML recipes, a resumable stage plan with a manifest, and backends that run stages.

Entry point: `python -m verl_ext evolve --recipe recipes/<model>.yaml [--dry-run]` (`verl_ext.cli`). Importing this
package never imports torch, verl or vllm.
"""

from .backend import Backend, StageContext, get_backend
from .loop import StaleStageError, dry_run, run_evolution
from .recipe import Recipe, RecipeError, load_recipe, parse_recipe
from .stages import build_plan

__all__ = [
    "Backend",
    "Recipe",
    "RecipeError",
    "StageContext",
    "StaleStageError",
    "build_plan",
    "dry_run",
    "get_backend",
    "load_recipe",
    "parse_recipe",
    "run_evolution",
]
