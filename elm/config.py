"""The typed run configuration: the one place where every default lives.

A run's configuration is composed by Hydra from ``conf/`` (``run_elm.py``, ``elm-run``,
:func:`compose`) and converted **once**, at the boundary, by :func:`load_config` into a frozen
:class:`RunConfig`; everything inward receives typed objects. The conversion is strict: a key
the schema does not know stops the run before it starts, wherever it came from (a YAML file, a
``+key=value`` override, a stored config being resumed), with the closest known key suggested;
a value of the wrong type names its key and the type expected.

``env`` and ``mutator`` are *plugin nodes*: a ``_target_`` class path plus that class's keyword
arguments. Built-in plugins have a schema here (looked up by ``_target_``), which supplies their
defaults and types and is what their constructors read their own defaults from; a user's plugin
without a schema is checked against its constructor's signature instead. Mixture components are
plugin nodes too, each checked the same way before Ray starts.

This module imports only the standard library (plugins import it inside sandboxes); Hydra is
imported by :func:`register_configs` and :func:`compose` alone.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, TypeVar, Union

from elm.sandbox import SandboxLimits

__all__ = [
    "BanditConfig", "BudgetConfig", "ConfigError", "FinetuneConfig", "IslandsConfig", "LoopConfig", "QDConfig",
    "RayConfig", "RunConfig", "SandboxConfig", "SearchConfig",
    "compose", "load_config", "register_configs",
]

MISSING = "???"  # OmegaConf's marker for a value that must be given
T = TypeVar("T")


class ConfigError(ValueError):
    """The run configuration is invalid (the message names the key and the fix)."""


# ============================================================================ the run


@dataclass(frozen=True)
class QDConfig:
    """Archive and parent selection."""

    kind: str = "grid"  # "grid" or "cvt"
    bins: tuple[int, ...] | None = None  # grid bins per descriptor; default: the environment's
    bounds: tuple[tuple[float, float], ...] | None = None  # [[lo, hi], ...]; default: the environment's
    cells: int = 1000  # CVT only
    cvt_samples: int = 50_000  # CVT only: uniform samples for k-means
    qd_offset: float | None = None  # QD score = sum(fitness - qd_offset); None: the environment's own
    out_of_bounds: str = "clip"  # "clip" into the edge cell, or "reject" (status out_of_bounds)
    selection: str = "uniform"  # "uniform", "tournament", "frontier", "curiosity", or a ParentSelector's dotted path
    selection_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the selector


@dataclass(frozen=True)
class SandboxConfig(SandboxLimits):
    """Where candidates run: the backend class, warm sandboxes per evaluator, and the per-candidate
    limits (the fields of :class:`elm.sandbox.SandboxLimits`, documented there and in docs/sandbox.md)."""

    _target_: str = "sandbox.GVisorSandbox"  # a Sandbox subclass; sandbox=process selects the unsafe one
    workers: int = 2  # warm sandboxes per evaluator actor (= cores the actor owns); more gives nothing
    runtime_dir: str | None = None  # where sandbox state lives; None: the backend's default

    @property
    def limits(self) -> SandboxLimits:
        return SandboxLimits(**{f.name: getattr(self, f.name) for f in fields(SandboxLimits)})


@dataclass(frozen=True)
class BudgetConfig:
    """When the run stops: whichever limit is reached first (counted across resumes).

    The wall-clock bound keeps the default run (a language model and the sandboxes sharing a
    laptop's CPU) within ~10 minutes however loaded the machine is."""

    evaluations: int = 3000  # finished evaluations, seeds included
    wall_seconds: float | None = 450.0
    tokens: int | None = None  # model tokens in + out, once mutators report them


@dataclass(frozen=True)
class RayConfig:
    """Ray cluster connection and actor placement (docs/cluster.md)."""

    address: str | None = None  # None: start a local Ray; "auto": join a running cluster
    num_cpus: int | None = None  # local Ray only; None: all cores
    num_gpus: int | None = None
    object_store_memory_mb: int = 256
    include_dashboard: bool = False
    mutator_actors: int = 1
    mutator_num_cpus: float = 0.0
    mutator_num_gpus: float = 0.0  # fractional allowed; the worker caps its CUDA memory to match
    mutator_resources: dict[str, float] = field(default_factory=dict)  # custom resources, e.g. {llm_node: 1}
    evaluator_actors: int = 1
    evaluator_num_cpus: float = 1.0
    evaluator_resources: dict[str, float] = field(default_factory=dict)  # e.g. {sandbox: 1} on clusters
    spread: bool = False  # place actors of each role on different nodes where possible


@dataclass(frozen=True)
class LoopConfig:
    """Steady-state loop settings."""

    batch_size: int = 16  # children per mutator call (and per evaluator call)
    max_in_flight: int = 4  # cap on batches proposed or being evaluated at once
    adaptive: bool = True  # adapt the in-flight limit to keep evaluators fed (not in ordered mode)
    ordered: bool | None = None  # absorb batches in submission order; None: when 1 mutator + 1 evaluator
    progress: bool = True  # progress bar with live QD metrics
    export_elites: bool = True  # write elites.jsonl at the end


@dataclass(frozen=True)
class BanditConfig:
    """Adaptive operator choice: the share of children of each operator (mixture component and, where
    configured, its variants) follows its recent archive improvement per second of compute."""

    enabled: bool = False
    half_life: int = 400  # children: older rewards count half after this many children of the arm
    floor: float = 0.05  # every operator keeps at least this share (exploration), of 1 / operators
    temperature: float = 1.0  # shares ~ rate ** (1 / temperature): lower is greedier
    warmup: int = 32  # children per operator before its measured rate replaces the configured weight


@dataclass(frozen=True)
class IslandsConfig:
    """An island model: ``count`` archives evolve apart; the best elites migrate between them (a ring)
    every ``migration_interval`` evaluations; the weakest islands are reset every ``reset_interval``."""

    count: int = 1  # 1: no islands
    migration_interval: int = 500  # evaluations between migrations (0: never)
    migrants: int = 4  # best elites each island sends to the next one
    reset_interval: int = 0  # evaluations between resets of the weakest islands (0: never)
    reset_fraction: float = 0.5  # share of islands (by best fitness) reset, reseeded from a surviving island


@dataclass(frozen=True)
class SearchConfig:
    """How the search spends its evaluations (docs/search.md)."""

    lanes: bool = True  # each mixture component in its own mutator actor(s), absorbed as it finishes
    # do not evaluate a program whose canonical form was already evaluated. Off by default: on circle
    # packing it saved 0.5 % of GP's evaluations, changed no result, and the key (~5 ms a child) doubled
    # the wall time of GP runs, whose mutation costs about as much (docs/search.md)
    dedup: bool = False
    bandit: BanditConfig = field(default_factory=BanditConfig)
    islands: IslandsConfig = field(default_factory=IslandsConfig)


#: the trainer of in-run fine-tuning unless ``finetune.trainer`` names another (a plugin, found by ``_target_``)
DEFAULT_TRAINER = "mutators.finetune.train.LoRATrainer"


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning a lane's model during the run on the run's own successes (docs/mutators.md).

    Every ``every_examples`` new successful children (valid, and inserted or better than their best
    parent: :func:`elm.finetune.successful`), a trainer actor exports the run's successes in the
    lane's format (:func:`elm.finetune.export_examples`) and trains an adapter, which the lane's
    mutator actors load between batches. Model hyper-parameters (LoRA rank, learning rate, batch)
    are the ``trainer`` node's arguments; this group holds how much of the machine a round may take.
    """

    enabled: bool = False
    operator: str | None = None  # the lane whose model is trained; None: the run's only lane with a model
    every_examples: int = 32  # new successful children between training rounds
    reexpress: bool = True  # also learn from the other lanes' successes, re-expressed in this lane's format
    min_gain: float | None = None  # only children beating their best parent by more than this
    warm_start: bool = True  # a round continues the last good adapter (False: a fresh adapter each round)
    blocking: bool = False  # the run waits for each round and its swap (versions then follow the seed)
    max_steps: int = 20  # optimizer steps per round
    max_seconds: float = 120.0  # wall seconds per round, pauses included (checked between steps)
    threads: int = 1  # torch CPU threads of the trainer
    duty_cycle: float = 0.5  # share of a round's wall time spent in steps; it sleeps the rest, between steps
    nice: int = 10  # the trainer process's niceness increment: sandboxes and the mutator go first
    num_cpus: float = 0.0  # Ray CPUs the trainer actor reserves (0: bounded by threads and duty cycle alone)
    num_gpus: float = 0.0  # Ray GPUs of the trainer actor (with trainer.device=cuda)
    trainer: dict[str, Any] = field(default_factory=lambda: {"_target_": DEFAULT_TRAINER})

    def __post_init__(self) -> None:
        for name in ("every_examples", "max_steps", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds!r}")
        if not 0 < self.duty_cycle <= 1:
            raise ValueError(f"duty_cycle must be in (0, 1] (1: train without pauses), "
                             f"got {self.duty_cycle!r}")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"nice must be in 0..19, got {self.nice!r}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError("num_cpus and num_gpus must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    """A whole run. ``env`` and ``mutator`` are plugin nodes (``{"_target_": ..., **arguments}``)."""

    env: dict[str, Any] = MISSING  # type: ignore[assignment]
    mutator: dict[str, Any] = MISSING  # type: ignore[assignment]
    qd: QDConfig = field(default_factory=QDConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seed: int = 0
    resume: str | None = None  # a run directory to continue

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable containers (tuples as lists), as stored in the run store."""
        return _plain(self)


# ============================================================================ built-in plugins
# Each schema's ``_target_`` default names the class it configures; the class's constructor
# takes its defaults from here. Their YAML files in conf/ extend them (`/schema/<group>/<name>`).


@dataclass(frozen=True)
class CirclePackingEnvConfig:
    _target_: str = "environments.circle_packing.CirclePacking"
    n: int = 26


@dataclass(frozen=True)
class SodaraceEnvConfig:
    _target_: str = "environments.sodarace.Sodarace"
    terrain: str = "flat"  # "flat", "hills" or "uphill"
    duration_s: float = 10.0  # simulated seconds per walker, 1 s of settling included


@dataclass(frozen=True)
class ImageEvolutionEnvConfig:
    _target_: str = "environments.image_evolution.ImageEvolution"


@dataclass(frozen=True)
class BinPackingEnvConfig:
    _target_: str = "environments.bin_packing.BinPacking"
    suites: tuple[str, ...] = ("or3", "weibull5k")
    seed: int = 0  # instance generator seed


@dataclass(frozen=True)
class GPMutatorConfig:
    _target_: str = "mutators.gp.GPMutator"
    name: str | None = None
    constant_sigma: float = 0.1
    p_constant: float = 0.6
    p_operator: float = 0.15
    p_duplicate: float = 0.1
    p_delete: float = 0.15
    # weight of the grow edit (a terminal becomes a small expression; mutators/gp.py); 0 gives GP as it was
    # before 2026-12-07 (docs/search.md: on by default since it helped on all three environments)
    p_grow: float = 0.5
    max_edits: int = 3
    p_crossover: float = 0.0  # share of children that are a crossover of two parents (0: one parent each)


@dataclass(frozen=True)
class GPCrossoverMutatorConfig:
    _target_: str = "mutators.gp_crossover.GPCrossoverMutator"
    name: str | None = None
    p_function: float = 0.3
    p_statement: float = 0.7


@dataclass(frozen=True)
class LMBackendConfig:
    """One schema for every backend kind; keys left null take the backend's own default."""

    kind: str = "hf"  # "hf" (transformers), "vllm" (GPU, optional extra) or "openai" (HTTP endpoint)
    model: str | None = None  # hub id, local directory, "smollm2" (embedded), or the served model's name
    revision: str | None = None
    trust_remote_code: bool | None = None  # only for models without a native class (Refact)
    gguf_file: str | None = None  # hf
    device: str | None = None  # hf: auto / cpu / cuda / cuda:N
    dtype: str | None = None  # hf, vllm: auto / float32 / bfloat16 / float16
    max_batch: int | None = None  # hf: prompts per generate() call
    threads: int | None = None  # hf on CPU: torch threads (null: all cores)
    eos_tokens: tuple[str, ...] | None = None  # hf: extra tokens that end a completion
    cache_dir: str | None = None  # hf: where "smollm2" is converted to
    context_length: int | None = None  # hf: prompt + completion tokens (null: from the model config)
    batching: str | None = None  # hf: padded / equal_length / single (models that ignore attention_mask)
    adapter: str | None = None  # hf: a LoRA adapter directory merged at load (python -m mutators.finetune)
    gpu_memory_utilization: float | None = None  # vllm
    tensor_parallel_size: int | None = None  # vllm
    max_model_len: int | None = None  # vllm
    enforce_eager: bool | None = None  # vllm
    base_url: str | None = None  # openai: e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = None  # openai: environment variable holding the key
    concurrency: int | None = None  # openai: requests in flight
    timeout_s: float | None = None  # openai: per request
    retries: int | None = None  # openai
    backoff_s: float | None = None  # openai
    max_backoff_s: float | None = None  # openai
    max_stop: int | None = None  # openai: stop strings sent to the server


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 0.8  # 0 = greedy
    top_p: float = 0.95
    top_k: int = 50  # 0 = whole vocabulary


@dataclass(frozen=True)
class DiffMutatorConfig:
    _target_: str = "mutators.lm.DiffMutator"
    name: str | None = None
    backend: LMBackendConfig = field(default_factory=LMBackendConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    file_name: str = "program.py"
    messages: tuple[str, ...] = ("Fixed bugs", "Improved the packing", "Changed the layout constants")
    hunk_header: bool = False
    max_anchor_lines: int = 6
    record_completion: bool = True


@dataclass(frozen=True)
class FIMMutatorConfig:
    _target_: str = "mutators.lm.FIMMutator"
    name: str | None = None
    backend: LMBackendConfig = field(default_factory=LMBackendConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    format: str = MISSING  # santacoder / fim_neox / refact / refact_psm
    order: str | None = None  # psm / spm override
    spans: dict[str, float] = field(default_factory=lambda: {"block": 0.5, "lines": 0.3, "body": 0.2})
    max_lines: int = 8
    entry_point_only: bool = True
    check_tokens: bool = True
    expected_ids: dict[str, int] | None = None
    record_completion: bool = True


@dataclass(frozen=True)
class RewriteMutatorConfig:
    _target_: str = "mutators.lm.RewriteMutator"
    name: str | None = None
    backend: LMBackendConfig = field(default_factory=LMBackendConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    style: str = "body"  # chat / body / body_chat / region / lines
    instruction: str | None = None
    max_region_lines: int = 6  # region / lines
    body_lines: int = 1  # body / body_chat: parent body lines the new body starts with
    parents: int | None = None
    show_parent: bool = False  # lines: show the parent's whole entry function first
    inspirations: int = 0  # chat / body / body_chat: other elites shown per child (best + diverse)
    record_completion: bool = True


@dataclass(frozen=True)
class CrossoverMutatorConfig:
    _target_: str = "mutators.lm.CrossoverMutator"
    name: str | None = None
    backend: LMBackendConfig = field(default_factory=LMBackendConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    style: str = "body"  # chat / body / body_chat
    instruction: str | None = None
    parents: int = 2
    body_lines: int = 1
    inspirations: int = 0
    record_completion: bool = True


@dataclass(frozen=True)
class MixtureMutatorConfig:
    _target_: str = "mutators.mixture.MixtureMutator"
    name: str | None = None
    components: dict[str, Any] = field(default_factory=dict)  # {name: {weight: w, _target_: ..., ...}}


#: group -> {option name in conf/schema/<group>/: schema}
PLUGIN_SCHEMAS: dict[str, dict[str, type]] = {
    "env": {"circle_packing": CirclePackingEnvConfig, "sodarace": SodaraceEnvConfig,
            "image_evolution": ImageEvolutionEnvConfig, "bin_packing": BinPackingEnvConfig},
    "mutator": {"gp": GPMutatorConfig, "gp_crossover": GPCrossoverMutatorConfig, "diff": DiffMutatorConfig,
                "fim": FIMMutatorConfig, "rewrite": RewriteMutatorConfig, "crossover": CrossoverMutatorConfig,
                "mixture": MixtureMutatorConfig},
}
_BY_TARGET: dict[str, type] = {
    schema._target_: schema for group in PLUGIN_SCHEMAS.values() for schema in group.values()  # type: ignore[attr-defined]
}


def schema_for(target: str) -> type | None:
    """The built-in schema of the plugin class ``target`` (a dotted path), or None for a user's plugin."""
    return _BY_TARGET.get(target)


# ============================================================================ the boundary


def load_config(data: Mapping[str, Any] | RunConfig) -> RunConfig:
    """Convert a composed config (plain containers, e.g. :func:`compose`'s) into a :class:`RunConfig`.

    Raises :class:`ConfigError` naming the key for an unknown key, a missing required value, a
    value of the wrong type, or a plugin (environment, mutator, mixture component) whose class
    cannot be imported or does not take the given arguments. Nothing is started.
    """
    if isinstance(data, RunConfig):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"a run config must be a mapping, got {type(data).__name__}")
    data = {k: v for k, v in data.items() if k != "hydra"}
    cfg = _parse(RunConfig, data, "")
    finetune = cfg.finetune
    if finetune.enabled:  # the trainer is imported (and its arguments checked) only when it will be used
        finetune = dataclasses.replace(finetune, trainer=plugin_node(finetune.trainer, path="finetune.trainer"))
    return dataclasses.replace(cfg, env=plugin_node(cfg.env, path="env"),
                               mutator=plugin_node(cfg.mutator, path="mutator"), finetune=finetune)


def plugin_node(node: Any, *, path: str) -> dict[str, Any]:
    """Check one plugin node (``{"_target_": ..., **arguments}``) and fill in its schema's defaults.

    Built-in targets are parsed with their schema; a mixture's components are checked one by one
    (each is a plugin node plus a ``weight``); any other target is imported and its constructor's
    signature must accept the arguments.
    """
    from elm.plugins import check_arguments, import_target

    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ConfigError(f"{path}: needs a '_target_' naming its class (e.g. {path}=<option> or "
                          f"{path}._target_=package.module.Class), got {node!r}")
    target = node["_target_"]
    if not isinstance(target, str):
        raise ConfigError(f"{path}._target_ must be a dotted path string, got {target!r}")
    schema = schema_for(target)
    if schema is not None:
        out = _plain(_parse(schema, node, path))
    else:
        try:
            check_arguments(import_target(target), {k: v for k, v in node.items() if not str(k).startswith("_")},
                            what=path)
        except (ValueError, TypeError) as exc:
            message = str(exc)
            raise ConfigError(message if message.startswith(f"{path}:") else f"{path}: {message}") from None
        out = _plain(dict(node))
    if schema is MixtureMutatorConfig:
        from elm.mutator import merge_variant

        components = {}
        for name, spec in out["components"].items():
            where = f"{path}.components.{name}"
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{where}: a component is a mapping with '_target_' and 'weight', got {spec!r}")
            weight = spec.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or weight < 0:
                raise ConfigError(f"{where}.weight must be a finite number >= 0, got {weight!r}")
            variants = spec.get("variants") or {}
            if not isinstance(variants, Mapping):
                raise ConfigError(f"{where}.variants must map variant names to overrides of the component's "
                                  f"arguments, e.g. {{cool: {{sampling: {{temperature: 0.3}}}}}}; got {variants!r}")
            rest = plugin_node({k: v for k, v in spec.items() if k not in ("weight", "variants")}, path=where)
            for vname, overrides in variants.items():
                if not isinstance(overrides, Mapping):
                    raise ConfigError(f"{where}.variants.{vname} must be a mapping of argument overrides, "
                                      f"got {overrides!r}")
                plugin_node(merge_variant(rest, overrides), path=f"{where}.variants.{vname}")
            components[str(name)] = {"weight": float(weight), **({"variants": _plain(variants)} if variants else {}),
                                     **rest}
        if not any(c["weight"] > 0 for c in components.values()):
            raise ConfigError(f"{path}.components: give at least one component a weight > 0")
        out["components"] = components
    return out


def _parse(cls: type[T], data: Any, path: str) -> T:
    """Build dataclass ``cls`` from a mapping, strictly (see :func:`load_config`)."""
    where = path or "the config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            close = get_close_matches(str(key), known, n=1)
            hint = f" Did you mean {_join(path, close[0])!r}?" if close else ""
            raise ConfigError(f"unknown config key {_join(path, str(key))!r}.{hint} "
                              f"Known keys of {where}: {', '.join(k for k in known if k != '_target_')}")
    values = {}
    for f in fields(cls):
        key = _join(path, f.name)
        if f.name in data:
            value = data[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = f.default_factory()  # type: ignore[misc]
        else:
            raise ConfigError(f"{key} is required")
        if isinstance(value, str) and value == MISSING:
            raise ConfigError(f"{key} is required (set it, e.g. {key}=...)")
        values[f.name] = _coerce(value, hints[f.name], key)
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:  # a schema's own __post_init__ checks
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against type hint ``tp`` (ints become floats where floats are expected)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        errors = []
        for a in others:
            try:
                return _coerce(value, a, key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return _parse(tp, value, key)
    if origin in (tuple, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key} must have {len(args)} entries, got {list(value)!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin in (dict, dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and mappings as JSON-ready dicts and lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def defaults_of(cls: type) -> dict[str, Any]:
    """A schema's defaults as plain containers (required values as ``"???"``), e.g. for Hydra."""
    out = {}
    for f in fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = _plain(f.default_factory())  # type: ignore[misc]
        else:
            out[f.name] = MISSING
    return out


# ============================================================================ Hydra

CONF_DIR = Path(__file__).resolve().parent / "conf"
if not CONF_DIR.is_dir():  # a source checkout: conf/ beside the package
    CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def register_configs() -> None:
    """Register the schemas' defaults with Hydra's ConfigStore (idempotent).

    The run's defaults are ``elm_schema``; each built-in plugin's defaults are
    ``schema/<group>/<name>``, which its YAML file extends (``- /schema/env/circle_packing@_here_``),
    so they never show up as options of the group. They are registered as plain containers: types
    and unknown keys are checked by :func:`load_config`, once, whatever the config's origin.
    """
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="elm_schema", node=defaults_of(RunConfig))
    for group, schemas in PLUGIN_SCHEMAS.items():
        for name, schema in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=defaults_of(schema))


#: run directory -> its deepest ancestor that existed when Hydra first resolved it (see elm.cli)
PREEXISTING: dict[str, Path] = {}


def _run_dir(resume: str | None, default: str) -> str:
    path = f"{resume}/resumes/{Path(default).parent.name}_{Path(default).name}" if resume else default
    if path not in PREEXISTING:  # resolved before Hydra creates it: remember what was already there
        here = Path(path).absolute()
        while not here.exists() and here != here.parent:
            here = here.parent
        PREEXISTING[path] = here
    return path


def register_resolvers(*, resume_dir: bool = False) -> None:
    """The ``elm_run_dir`` resolver of ``conf/config.yaml``: a resumed run keeps its Hydra files
    under ``<run>/resumes/<date>_<time>`` (``resume_dir``); :func:`compose` only needs it to resolve."""
    from omegaconf import OmegaConf

    if resume_dir:
        OmegaConf.register_new_resolver("elm_run_dir", _run_dir, replace=True)
    elif not OmegaConf.has_resolver("elm_run_dir"):
        OmegaConf.register_new_resolver("elm_run_dir", lambda resume, default: resume or default)


def compose(overrides: list[str] | tuple[str, ...] = (), *, config_dir: str | None = None) -> dict:
    """Compose the run config as ``elm-run`` would and return it as plain resolved containers.

    For notebooks and tests: ``elm.runner.run(compose(["budget.evaluations=100"]), run_dir=...)``.
    Hydra's own errors cover unknown group options (``env=sodaraec``); everything else is checked by
    :func:`load_config`. ``config_dir`` adds a directory of the user's own configs (searched first).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    register_configs()
    register_resolvers()
    overrides = list(overrides)
    if config_dir is not None:
        overrides.append(f"hydra.searchpath=[file://{Path(config_dir).resolve()}]")
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
