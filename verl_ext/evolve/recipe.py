"""Load and validate a YAML evolution recipe into a typed, frozen `Recipe`.

Every error names the dotted key it is about (`questioner.m: must be >= 2, got 1`); all errors of a
file are reported at once. Paths may use `${VAR}` / `${VAR:-default}` so one recipe serves laptops and Slurm.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from verl_ext.image_io import IMAGE_PIXELS_PER_TOKEN


class RecipeError(ValueError):
    """A recipe that cannot be used; `errors` lists one `key: problem` line per fault."""

    def __init__(self, errors: list[str], source: str | None = None):
        self.errors = list(errors)
        self.source = source
        from_set = self.errors and all("(from --set " in e for e in self.errors)
        head = f"invalid recipe {source}" if source else "invalid recipe"
        if from_set:
            head = f"invalid --set override for recipe {source}" if source else "invalid --set override"
        super().__init__(head + ":\n  " + "\n  ".join(self.errors))


def _f(default=dataclasses.MISSING, *, key: str | None = None, **checks):
    """A dataclass field with value checks (ge, gt, le, lt, choices) and an optional YAML key name."""
    meta = dict(checks)
    if key:
        meta["key"] = key
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda d=default: dataclasses.replace(d), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------------
# Schema. Defaults are the paper's reference run (Qwen2.5-VL-7B, 8 GPUs); see docs/method.md.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmupSettings:
    """The supervised format warm-up of a tiny base model (local backend): what it learns from and for how long."""

    # "module:function" giving the labeled seed set, called as fn(num_images, seed, rng) -> [(PIL image, items)];
    # null = the test kit's templated scenes (verl_ext.local.warmup.scene_questions)
    examples: str | None = None
    num_images: int = _f(96, ge=1)  # labeled images of the seed set
    steps: int = _f(220, ge=1)  # optimizer steps, one micro-batch per role each
    lr: float = _f(3e-3, gt=0)  # peak AdamW learning rate (linear warm-up, cosine decay to a tenth)


@dataclass(frozen=True)
class ModelConfig:
    base: str  # HF id or local dir of the base VLM: Q_0 = S_0. `testkit:tiny_vlm` = the offline test model.
    trust_remote_code: bool = False
    # Supervised format warm-up of the base model before iteration 1 (local backend, tiny models only).
    format_warmup: bool = False
    warmup: WarmupSettings = _f(WarmupSettings())  # its settings (used only with format_warmup)


@dataclass(frozen=True)
class ImagesConfig:
    # folder of images | parquet with an image column | HF dataset | testkit (synthetic images, max_images of them)
    # | generator (`path` names a `module:function(out_path, n, seed)` that writes max_images of them, e.g. the
    # controlled world's unlabeled images, verl_ext.world.data:write_unlabeled_parquet)
    source: Literal["folder", "parquet", "hf", "testkit", "generator"]
    path: str  # folder path, parquet path, HF dataset name, generator `module:function` (testkit: any label)
    image_column: str = "image"
    split: str = "train"  # HF datasets only
    max_images: int | None = _f(None, ge=1)  # subsample (seeded) to at most this many images
    min_pixels: int = _f(262144, ge=1)  # image pixel limits of the processor (both roles)
    max_pixels: int = _f(4194304, ge=1)


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO settings of one role's verl stage."""

    n: int = _f(8, ge=2)  # GRPO group size: rollouts per prompt
    lr: float = _f(1e-6, gt=0)
    weight_decay: float = _f(1e-2, ge=0)
    kl_coef: float = _f(1e-2, ge=0)  # KL loss coefficient (0 disables the KL loss)
    kl_type: Literal["low_var_kl", "kl", "abs", "mse", "full"] = "low_var_kl"
    rollout_batch_size: int = _f(512, ge=1)  # prompts per step (verl data.train_batch_size)
    global_batch_size: int = _f(128, ge=1)  # prompts per actor update (verl ppo_mini_batch_size)
    max_token_len_per_gpu: int = _f(16384, ge=1)  # dynamic micro-batching budget
    max_prompt_length: int = _f(6144, ge=1)  # image tokens included: up to max_pixels / 784 for Qwen2.5-VL
    max_response_length: int = _f(2048, ge=1)
    temperature: float = _f(1.0, gt=0)  # rollout sampling
    top_p: float = _f(1.0, gt=0, le=1)
    clip_ratio_high: float = _f(0.2, gt=0)  # PPO clip upper bound (verl actor.clip_ratio_high; reference code: 0.3)
    # Fewer training rows than rollout_batch_size (a small band-filter result, a small image set): true = shrink this
    # stage's batch to fit, with a warning naming the counts (verl would divide by zero); false = stop with them.
    shrink_to_fit: bool = True


@dataclass(frozen=True)
class QuestionerConfig:
    steps: int = _f(20, ge=1)  # GRPO steps per questioner stage
    m: int = _f(10, ge=2)  # m: frozen-reasoner samples per rollout question (confidence p = |top group| / m)
    reasoner_temperature: float = _f(1.0, gt=0)
    reasoner_top_p: float = _f(1.0, gt=0, le=1)
    reasoner_top_k: int = _f(40, ge=-1)  # -1 = off
    reasoner_max_tokens: int = _f(4096, ge=1)  # as pseudo_label.max_new_tokens: the same role, the same votes
    # How the frozen reasoner is asked for its m answers: answer_only (the reference implementation: a system prompt
    # asking for the final answer only, in \boxed{}, the question type in the user text) or step_by_step (the
    # reasoner's own <think> prompt, prompts.reasoner). docs/reference-differences.md says what each changes.
    reasoner_prompt: Literal["answer_only", "step_by_step"] = "step_by_step"
    # paper: max(0, r_unc - r_rep), 0 if unparsable; reference (the reference code): min(p, 1-p) - r_rep, -1 - r_rep
    reward_mode: Literal["paper", "reference"] = "reference"
    lam: float = _f(1.0, ge=0, key="lambda")  # lambda: weight of the diversity (repetition) penalty
    cluster_threshold: float = _f(0.5, gt=0, le=1)  # BLEU-distance threshold of the agglomerative clustering
    # Where the frozen reasoner S_{t-1} runs: a verl reward-model pool started by the stage, or a served endpoint.
    # colocated: verl serves S_{t-1} on the training GPUs, woken and put to sleep each step (one-GPU machines)
    reasoner_service: Literal["pool", "colocated", "endpoint"] = "pool"
    reasoner_endpoint: str | None = None  # URL when reasoner_service = endpoint
    checkpoint_every: int | None = _f(None, ge=1)  # verl save_freq; None = only at the end of the stage
    # Share of a step's questions whose frozen-reasoner request may fail for good (scored 0, counted per step as
    # visplay/reasoner/failed) before the step fails. verl's router turns any vLLM 4xx into a 500, so one bad request
    # must not end a stage.
    reasoner_max_failed_fraction: float = _f(0.01, ge=0, le=1)
    grpo: GRPOConfig = _f(GRPOConfig())


@dataclass(frozen=True)
class GenerationConfig:
    num_questions: int = _f(8000, ge=1)  # N: questions Q_t writes per iteration
    temperature: float = _f(1.0, gt=0)
    top_p: float = _f(0.95, gt=0, le=1)
    max_new_tokens: int = _f(1024, ge=1)
    shards: int = _f(8, ge=1)  # resumable units of work; each has its own seed (balanced by question count)
    # Images asked about per iteration, N spread over them: a fresh seeded subset each iteration when the image set is
    # larger. null = one image per question (min(N, all images)).
    images_per_iteration: int | None = _f(None, ge=1)


@dataclass(frozen=True)
class PseudoLabelConfig:
    m: int = _f(9, ge=2)  # m: reasoner samples per generated question
    temperature: float = _f(1.0, gt=0)
    top_p: float = _f(1.0, gt=0, le=1)
    top_k: int = _f(40, ge=-1)
    max_new_tokens: int = _f(4096, ge=1)
    shards: int = _f(8, ge=1)


@dataclass(frozen=True)
class FilterConfig:
    """Confidence band: keep a question when low <= p <= high. Paper: |p - 1/2| <= delta (delta = 0.25)."""

    low: float = _f(0.3, ge=0, le=1)
    high: float = _f(0.8, ge=0, le=1)


@dataclass(frozen=True)
class ReasonerConfig:
    steps: int = _f(20, ge=1)  # GRPO steps per reasoner stage
    format_weight: float = _f(0.1, ge=0, le=1)  # reward = (1 - w) * [answer == y*] + w * [format valid]
    checkpoint_every: int | None = _f(None, ge=1)
    grpo: GRPOConfig = _f(GRPOConfig(max_response_length=4096))


@dataclass(frozen=True)
class PromptsConfig:
    """Jinja prompt files; null = the packaged ones (verl_ext/prompts/). Training and offline sampling use the same."""

    questioner: str | None = None
    reasoner: str | None = None


@dataclass(frozen=True)
class StatsConfig:
    diversity_sample: int = _f(1000, ge=2)  # questions sampled (seeded) for the BLEU-cluster diversity stat
    histogram_bins: int = _f(10, ge=1)


@dataclass(frozen=True)
class ResourcesConfig:
    """Where stages run. Never part of a stage's config hash: moving a run to other hardware keeps its results."""

    nnodes: int = _f(1, ge=1)
    gpus_per_node: int = _f(8, ge=0)
    questioner_train_gpus: int = _f(4, ge=0)  # per node: actor + rollout of the questioner stage
    questioner_reasoner_gpus: int = _f(4, ge=0)  # per node: frozen-reasoner pool (reasoner_service = pool)
    reasoner_train_gpus: int = _f(8, ge=0)  # per node: the reasoner stage
    inference_gpus: int = _f(8, ge=0)  # generation / pseudo-labelling: data-parallel engines
    rollout_tensor_parallel_size: int = _f(2, ge=1)  # vLLM rollout engines of the training stages
    inference_tensor_parallel_size: int = _f(1, ge=1)  # generation / pseudo-labelling / frozen-reasoner engines
    gpu_memory_utilization: float = _f(0.6, gt=0, le=1)


@dataclass(frozen=True)
class DeviceConfig:
    """Device-level settings of the verl backend's stage commands; empty for GPUs. A CPU run (recipes/tiny-verl.yaml)
    lists here every line in which it differs from the GPU path, so that is all CI does not execute. Never hashed."""

    env: list[str] = _f([])  # KEY=VALUE set in every stage process
    overrides: list[str] = _f([])  # Hydra overrides appended to both training stages' commands
    inference_engine: Literal["vllm", "hf"] = "vllm"  # generation / pseudo-labelling (verl_ext.inference)


@dataclass(frozen=True)
class StorageConfig:
    root: str = "runs"  # run dir = <root>/<name> unless --run-dir is given
    keep_checkpoints: bool = True  # False: delete a verl FSDP checkpoint once merged to HF format


@dataclass(frozen=True)
class LoggingConfig:
    loggers: list[str] = _f(["console"])  # any of console, wandb, tensorboard
    project: str = "visplay"


@dataclass(frozen=True)
class Recipe:
    name: str
    model: ModelConfig
    images: ImagesConfig
    backend: Literal["verl", "local"] = "verl"
    iterations: int = _f(3, ge=1)  # T: evolution iterations
    seed: int = _f(1, ge=0)
    questioner: QuestionerConfig = _f(QuestionerConfig())
    generation: GenerationConfig = _f(GenerationConfig())
    pseudo_label: PseudoLabelConfig = _f(PseudoLabelConfig())
    filter: FilterConfig = _f(FilterConfig())
    reasoner: ReasonerConfig = _f(ReasonerConfig())
    prompts: PromptsConfig = _f(PromptsConfig())
    stats: StatsConfig = _f(StatsConfig())
    resources: ResourcesConfig = _f(ResourcesConfig())
    device: DeviceConfig = _f(DeviceConfig())
    storage: StorageConfig = _f(StorageConfig())
    logging: LoggingConfig = _f(LoggingConfig())

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain YAML data, with YAML key names (`lambda`, not `lam`)."""
        return to_plain(self)


LOGGERS = ("console", "wandb", "tensorboard")
PROMPT_TEXT_TOKENS = 256  # chat template + instruction + question, generously

# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (PyYAML silently keeps the last one)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None, env: dict | None = None) -> Recipe:
    """Read, expand `${VAR:-default}`, apply `key=value` overrides, and validate a recipe file."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError([f"recipe file not found: {path}"], str(path))
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise RecipeError([f"not valid YAML: {exc}"], str(path)) from exc
    return parse_recipe(data, overrides=overrides, env=env, source=str(path))


def parse_recipe(data: Any, overrides: list[str] | None = None, env: dict | None = None, source: str | None = None):
    """Validate already-loaded recipe data (a mapping) into a `Recipe`."""
    if not isinstance(data, dict):
        raise RecipeError([f"<root>: must be a mapping, got {type(data).__name__}"], source)
    data = _deepcopy(data)
    errors: list[str] = []
    for item in overrides or []:
        _apply_override(data, item, errors)
    data = _expand_env(data, "", env if env is not None else os.environ, errors)
    recipe = _build(Recipe, data, "", errors) if not errors else None
    if recipe is not None:
        _cross_checks(recipe, errors)
    if errors:
        raise RecipeError(_name_overrides(errors, overrides or []), source)
    return recipe


def _name_overrides(errors: list[str], overrides: list[str]) -> list[str]:
    """Point an error about a key set by `--set KEY=VALUE` at that option, not at the recipe file."""
    keys = {item.split("=", 1)[0].strip(): item for item in overrides if "=" in item}
    out = []
    for error in errors:
        key = error.split(":", 1)[0]
        item = next((keys[k] for k in keys if key == k or key.startswith(k + ".") or k.startswith(key + ".")), None)
        out.append(f"{error} (from --set {item})" if item else error)
    return out


def _deepcopy(obj):
    if isinstance(obj, dict):
        return {k: _deepcopy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deepcopy(v) for v in obj]
    return obj


def _apply_override(data: dict, item: str, errors: list[str]) -> None:
    """`questioner.m=8` sets a nested key; the value is parsed as YAML (so `8` is an int, `[a, b]` a list)."""
    if "=" not in item:
        errors.append(f"override {item!r}: expected KEY=VALUE")
        return
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            errors.append(f"{'.'.join(parts[: i + 1])}: is not a mapping, cannot set {key}")
            return
        node = nxt
    node[parts[-1]] = value


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(obj, path: str, env, errors: list[str]):
    if isinstance(obj, dict):
        return {k: _expand_env(v, _join(path, str(k)), env, errors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand_env(v, f"{path}[{i}]", env, errors) for i, v in enumerate(obj)]
    if isinstance(obj, str) and "${" in obj:

        def sub(match):
            name, default = match.group(1), match.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            errors.append(f"{path}: environment variable {name} is not set and has no default (${{{name}:-...}})")
            return ""

        out = _ENV_RE.sub(sub, obj)
        if _ENV_RE.fullmatch(obj.strip()):  # a whole-value `${VAR}` takes the type its text has: NNODES=2 -> 2
            try:
                typed = yaml.safe_load(out)
            except yaml.YAMLError:
                typed = out
            if isinstance(typed, (bool, int, float)):
                return typed
        return os.path.expanduser(out) if out.startswith("~") else out
    if isinstance(obj, str) and obj.startswith("~"):
        return os.path.expanduser(obj)
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _yaml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _build(cls, data, path: str, errors: list[str]):
    """Build dataclass `cls` from mapping `data`, appending `key: problem` strings to `errors`."""
    if not isinstance(data, dict):
        errors.append(f"{path or '<root>'}: must be a mapping, got {_describe(data)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {_yaml_key(f): f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(fields)})"
            errors.append(f"{_join(path, str(key))}: unknown key{hint}")
    kwargs = {}
    for key, f in fields.items():
        kpath = _join(path, key)
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                errors.append(f"{kpath}: required key is missing")
            continue
        raw = data[key]
        if dataclasses.is_dataclass(hints[f.name]) and f.default_factory is not dataclasses.MISSING:
            if isinstance(raw, dict):  # a partial section keeps this field's own defaults for the rest
                raw = {**to_plain(f.default_factory()), **raw}
        value = _convert(hints[f.name], raw, kpath, errors)
        if value is _BAD:
            continue
        _check_value(f, value, kpath, errors)
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except TypeError:  # a required field was missing: already reported
        return None


_BAD = object()


def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "null"


def _convert(tp, value, path: str, errors: list[str]):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _convert(non_none[0], value, path, errors)
    if value is None:
        errors.append(f"{path}: must not be null")
        return _BAD
    if dataclasses.is_dataclass(tp):
        built = _build(tp, value, path, errors)
        return _BAD if built is None else built
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            errors.append(f"{path}: must be one of {', '.join(map(str, choices))}; got {value!r}")
            return _BAD
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            errors.append(f"{path}: must be a list, got {_describe(value)}")
            return _BAD
        items = [_convert(item_tp, v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
        return _BAD if any(v is _BAD for v in items) else items
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{path}: must be true or false, got {_describe(value)}")
            return _BAD
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: must be an integer, got {_describe(value)}")
            return _BAD
        return value
    if tp is float:
        # YAML 1.1 reads `1e-6` (no dot) as a string; accept any float literal.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: must be a number, got {_describe(value)}")
            return _BAD
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            errors.append(f"{path}: must be a non-empty string, got {_describe(value)}")
            return _BAD
        return value
    raise TypeError(f"unsupported recipe field type {tp!r} at {path}")


def _check_value(f: dataclasses.Field, value, path: str, errors: list[str]) -> None:
    if value is None:
        return
    meta = f.metadata
    checks = (
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
        ("lt", lambda v, b: v < b, "<"),
    )
    for name, ok, sign in checks:
        if name in meta and not ok(value, meta[name]):
            errors.append(f"{path}: must be {sign} {meta[name]}, got {value!r}")
            return


def _cross_checks(r: Recipe, errors: list[str]) -> None:
    """Constraints between keys; each message names the key to change."""
    if r.filter.low > r.filter.high:
        errors.append(f"filter.low: must be <= filter.high ({r.filter.high}), got {r.filter.low}")
    for role in ("questioner", "reasoner"):
        g: GRPOConfig = getattr(r, role).grpo
        if g.global_batch_size > g.rollout_batch_size:
            errors.append(
                f"{role}.grpo.global_batch_size: must be <= {role}.grpo.rollout_batch_size "
                f"({g.rollout_batch_size}), got {g.global_batch_size}"
            )
        elif g.rollout_batch_size % g.global_batch_size:
            errors.append(
                f"{role}.grpo.global_batch_size: must divide {role}.grpo.rollout_batch_size "
                f"({g.rollout_batch_size}), got {g.global_batch_size}"
            )
    for role in ("questioner", "reasoner"):
        g = getattr(r, role).grpo
        if g.max_token_len_per_gpu < g.max_prompt_length + g.max_response_length:
            errors.append(
                f"{role}.grpo.max_token_len_per_gpu: must be >= max_prompt_length + max_response_length "
                f"({g.max_prompt_length + g.max_response_length}), got {g.max_token_len_per_gpu}"
            )
        need = r.images.max_pixels // IMAGE_PIXELS_PER_TOKEN + PROMPT_TEXT_TOKENS
        if g.max_prompt_length < need:
            errors.append(
                f"{role}.grpo.max_prompt_length: must be >= {need} so the largest image fits "
                f"(images.max_pixels / {IMAGE_PIXELS_PER_TOKEN} image tokens + {PROMPT_TEXT_TOKENS} of text), "
                f"got {g.max_prompt_length}"
            )
    q = r.questioner
    if q.reasoner_service == "endpoint" and not q.reasoner_endpoint:
        errors.append("questioner.reasoner_endpoint: required when questioner.reasoner_service is endpoint")
    if q.reasoner_service != "endpoint" and q.reasoner_endpoint:
        errors.append("questioner.reasoner_endpoint: only used with questioner.reasoner_service: endpoint")
    if q.reasoner_service == "colocated" and r.backend != "verl":
        errors.append("questioner.reasoner_service: colocated is a verl backend setting (pool or endpoint here)")
    if r.images.source == "generator" and not re.fullmatch(r"[\w.]+:\w+", r.images.path):
        errors.append(f"images.path: a generator source needs 'module:function', got {r.images.path!r}")
    if r.images.source in ("testkit", "generator") and r.images.max_images is None:
        errors.append(f"images.max_images: required with images.source: {r.images.source} (how many synthetic images)")
    if r.images.min_pixels > r.images.max_pixels:
        errors.append(
            f"images.min_pixels: must be <= images.max_pixels ({r.images.max_pixels}), got {r.images.min_pixels}"
        )
    for i, name in enumerate(r.logging.loggers):
        if name not in LOGGERS:
            errors.append(f"logging.loggers[{i}]: must be one of {', '.join(LOGGERS)}; got {name!r}")
    if r.backend == "local" and q.reasoner_prompt != "step_by_step":
        errors.append(
            "questioner.reasoner_prompt: the local backend asks the frozen reasoner with its own step_by_step prompt "
            f"only, got {q.reasoner_prompt!r}"
        )
    for i, item in enumerate(r.device.env):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", item):
            errors.append(f"device.env[{i}]: must be KEY=VALUE, got {item!r}")
    if r.model.warmup.examples is not None and not re.fullmatch(r"[\w.]+:\w+", r.model.warmup.examples):
        errors.append(f"model.warmup.examples: must be 'module:function' or null, got {r.model.warmup.examples!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", r.name):
        errors.append(f"name: must be a plain file name (letters, digits, . _ -), got {r.name!r}")
    if r.backend == "verl":
        res = r.resources
        if res.gpus_per_node < 1:
            errors.append("resources.gpus_per_node: the verl backend needs >= 1 GPU per node")
        pool = res.questioner_reasoner_gpus if q.reasoner_service == "pool" else 0
        if res.questioner_train_gpus + pool > res.gpus_per_node:
            errors.append(
                "resources.questioner_train_gpus: questioner_train_gpus + questioner_reasoner_gpus "
                f"({res.questioner_train_gpus} + {pool}) must fit in resources.gpus_per_node ({res.gpus_per_node})"
            )
        for key in ("questioner_train_gpus", "reasoner_train_gpus", "inference_gpus"):
            val = getattr(res, key)
            if not 1 <= val <= res.gpus_per_node:
                errors.append(
                    f"resources.{key}: must be in 1..resources.gpus_per_node ({res.gpus_per_node}), got {val}"
                )
        if q.reasoner_service == "pool" and res.questioner_reasoner_gpus < 1:
            errors.append("resources.questioner_reasoner_gpus: must be >= 1 when questioner.reasoner_service is pool")
        tp_of = {
            "questioner_train_gpus": ("rollout_tensor_parallel_size", res.rollout_tensor_parallel_size),
            "reasoner_train_gpus": ("rollout_tensor_parallel_size", res.rollout_tensor_parallel_size),
            "inference_gpus": ("inference_tensor_parallel_size", res.inference_tensor_parallel_size),
            "questioner_reasoner_gpus": ("inference_tensor_parallel_size", res.inference_tensor_parallel_size),
        }
        for key, (tp_key, tp) in tp_of.items():
            val = getattr(res, key)
            if val and val % tp:
                errors.append(f"resources.{key}: must be a multiple of resources.{tp_key} ({tp}), got {val}")


def to_plain(obj):
    """A recipe (or section) as plain YAML data with YAML key names."""
    if dataclasses.is_dataclass(obj):
        return {_yaml_key(f): to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def band_from_delta(delta: float) -> tuple[float, float]:
    """The paper's band |p - 1/2| <= delta as (low, high)."""
    return 0.5 - delta, 0.5 + delta
