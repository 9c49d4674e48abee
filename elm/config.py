"""Structured-config schemas for the Hydra CLI (``run_elm.py`` and ``conf/``).

Each typed group (``qd``, ``sandbox``, ``budget``, ``ray``, ``loop``) is a
dataclass, so a misspelt key or a wrong type fails at start with Hydra's own
message. ``env`` and ``mutator`` are open nodes with a ``_target_`` (users plug
in their own classes); the built-in options extend a schema registered here
through their defaults list, which makes their keys typo-checked too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class QDConfig:
    """Archive and parent selection."""

    kind: str = "grid"  # "grid" or "cvt"
    bins: Optional[List[int]] = None  # grid bins per descriptor; default: the environment's
    bounds: Optional[Any] = None  # [[lo, hi], ...] per descriptor; default: the environment's
    cells: int = 1000  # CVT only
    cvt_samples: int = 50_000  # CVT only: uniform samples for k-means
    qd_offset: float = 0.0  # QD score = sum(fitness - qd_offset) over elites
    out_of_bounds: str = "clip"  # "clip" into the edge cell, or "reject" (status out_of_bounds)
    selection: str = "uniform"  # "uniform" or "curiosity"
    selection_args: Any = field(default_factory=dict)


@dataclass
class SandboxConfig:
    """Where candidates run and under which limits (see docs/sandbox.md for the reasoning)."""

    backend: str = "gvisor"  # "gvisor", "process" (unsafe), or a dotted path to a Sandbox class
    workers: int = 2  # warm sandboxes per evaluator actor (= cores the actor owns)
    runtime_dir: Optional[str] = None
    timeout_s: float = 10.0
    cpu_s: int = 20
    memory_mb: int = 2048
    nproc: int = 64
    fsize_mb: int = 64
    output_bytes: int = 1048576
    sandbox_memory_mb: int = 4096
    sandbox_pids: int = 512
    tmpfs_mb: int = 64
    recycle_after: int = 500


@dataclass
class BudgetConfig:
    """When the run stops: whichever limit is reached first (counted across resumes)."""

    evaluations: int = 2000  # finished evaluations, seeds included
    wall_seconds: Optional[float] = None
    tokens: Optional[int] = None  # model tokens in + out, once mutators report them


@dataclass
class RayConfig:
    """Ray cluster connection and actor placement."""

    address: Optional[str] = None  # None: start a local Ray; "auto": join a running cluster
    num_cpus: Optional[int] = None  # local Ray only; None: all cores
    num_gpus: Optional[int] = None
    object_store_memory_mb: int = 256
    include_dashboard: bool = False
    mutator_actors: int = 1
    mutator_num_cpus: float = 0.0
    mutator_num_gpus: float = 0.0  # fractional allowed; the worker caps its CUDA memory to match
    mutator_resources: Any = field(default_factory=dict)  # custom resources, e.g. {llm_node: 1}
    evaluator_actors: int = 1
    evaluator_num_cpus: float = 1.0
    evaluator_resources: Any = field(default_factory=dict)  # e.g. {sandbox: 1} on clusters
    spread: bool = False  # place actors of each role on different nodes where possible


@dataclass
class LoopConfig:
    """Steady-state loop settings."""

    batch_size: int = 16  # children per mutator call (and per evaluator call)
    max_in_flight: int = 4  # cap on batches proposed or being evaluated at once
    adaptive: bool = True  # adapt the in-flight limit to keep evaluators fed (not in ordered mode)
    ordered: Optional[bool] = None  # absorb batches in submission order; None: when 1 mutator + 1 evaluator
    progress: bool = True  # progress bar with live QD metrics
    export_elites: bool = True  # write elites.jsonl at the end


@dataclass
class ELMConfig:
    """Top-level run configuration."""

    env: Any = MISSING
    mutator: Any = MISSING
    qd: QDConfig = field(default_factory=QDConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    seed: int = 0
    resume: Optional[str] = None  # a run directory to continue


# --- schemas of the built-in env/mutator options (their YAML lists these in `defaults`)


@dataclass
class CirclePackingEnvConfig:
    _target_: str = "environments.circle_packing.CirclePacking"
    n: int = 26


@dataclass
class SodaraceEnvConfig:
    _target_: str = "environments.sodarace.Sodarace"
    terrain: str = "flat"  # "flat", "hills" or "uphill"
    duration_s: float = 10.0  # simulated seconds per walker, 1 s of settling included


@dataclass
class ImageEvolutionEnvConfig:
    _target_: str = "environments.image_evolution.ImageEvolution"


@dataclass
class BinPackingEnvConfig:
    _target_: str = "environments.bin_packing.BinPacking"
    suites: List[str] = field(default_factory=lambda: ["or3", "weibull5k"])
    seed: int = 0  # instance generator seed


@dataclass
class GPMutatorConfig:
    _target_: str = "mutators.gp.GPMutator"
    name: Optional[str] = None
    constant_sigma: float = 0.1
    p_constant: float = 0.6
    p_operator: float = 0.15
    p_duplicate: float = 0.1
    p_delete: float = 0.15
    max_edits: int = 3


# --- language-model mutators (mutators/lm.py, mutators/backends/); docs/mutators.md explains each key


@dataclass
class LMBackendConfig:
    """One schema for every backend kind; keys left null take the backend's own default."""

    kind: str = "hf"  # "hf" (transformers), "vllm" (GPU, optional extra) or "openai" (HTTP endpoint)
    model: Optional[str] = None  # hub id, local directory, "smollm2" (embedded), or the served model's name
    revision: Optional[str] = None
    trust_remote_code: Optional[bool] = None  # only for models without a native class (Refact)
    gguf_file: Optional[str] = None  # hf
    device: Optional[str] = None  # hf: auto / cpu / cuda / cuda:N
    dtype: Optional[str] = None  # hf, vllm: auto / float32 / bfloat16 / float16
    max_batch: Optional[int] = None  # hf: prompts per generate() call
    threads: Optional[int] = None  # hf on CPU: torch threads (null: all cores)
    eos_tokens: Optional[List[str]] = None  # hf: extra tokens that end a completion
    cache_dir: Optional[str] = None  # hf: where "smollm2" is converted to
    gpu_memory_utilization: Optional[float] = None  # vllm
    tensor_parallel_size: Optional[int] = None  # vllm
    max_model_len: Optional[int] = None  # vllm
    enforce_eager: Optional[bool] = None  # vllm
    base_url: Optional[str] = None  # openai: e.g. http://127.0.0.1:8000/v1
    api_key_env: Optional[str] = None  # openai: environment variable holding the key
    concurrency: Optional[int] = None  # openai: requests in flight
    timeout_s: Optional[float] = None  # openai: per request
    retries: Optional[int] = None  # openai
    backoff_s: Optional[float] = None  # openai
    max_backoff_s: Optional[float] = None  # openai
    max_stop: Optional[int] = None  # openai: stop strings sent to the server


@dataclass
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 0.8  # 0 = greedy
    top_p: float = 0.95
    top_k: int = 50  # 0 = whole vocabulary


@dataclass
class DiffMutatorConfig:
    _target_: str = "mutators.lm.DiffMutator"
    name: Optional[str] = None
    backend: LMBackendConfig = field(default_factory=LMBackendConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    file_name: str = "program.py"
    messages: List[str] = field(default_factory=lambda: ["Fixed bugs", "Improved the packing",
                                                         "Changed the layout constants"])
    hunk_header: bool = False
    max_anchor_lines: int = 6
    record_completion: bool = True


@dataclass
class FIMMutatorConfig:
    _target_: str = "mutators.lm.FIMMutator"
    name: Optional[str] = None
    backend: LMBackendConfig = field(default_factory=LMBackendConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    format: str = MISSING  # santacoder / fim_neox / refact / refact_psm
    order: Optional[str] = None  # psm / spm override
    spans: Dict[str, float] = field(default_factory=lambda: {"block": 0.5, "lines": 0.3, "body": 0.2})
    max_lines: int = 8
    entry_point_only: bool = True
    check_tokens: bool = True
    expected_ids: Optional[Dict[str, int]] = None
    record_completion: bool = True


@dataclass
class RewriteMutatorConfig:
    _target_: str = "mutators.lm.RewriteMutator"
    name: Optional[str] = None
    backend: LMBackendConfig = field(default_factory=LMBackendConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    style: str = "body"  # chat / body / body_chat / region / lines
    instruction: Optional[str] = None
    max_region_lines: int = 6  # region / lines
    body_lines: int = 1  # body / body_chat: parent body lines the new body starts with
    parents: Optional[int] = None
    show_parent: bool = False  # lines: show the parent's whole entry function first
    record_completion: bool = True


@dataclass
class CrossoverMutatorConfig:
    _target_: str = "mutators.lm.CrossoverMutator"
    name: Optional[str] = None
    backend: LMBackendConfig = field(default_factory=LMBackendConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    style: str = "body"  # chat / body / body_chat
    instruction: Optional[str] = None
    parents: int = 2
    body_lines: int = 1
    record_completion: bool = True


@dataclass
class MixtureMutatorConfig:
    _target_: str = "mutators.mixture.MixtureMutator"
    name: Optional[str] = None
    components: Dict[str, Any] = field(default_factory=dict)  # {name: {weight: w, _target_: ..., ...}}


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="elm_schema", node=ELMConfig)
    cs.store(group="env", name="circle_packing_schema", node=CirclePackingEnvConfig)
    cs.store(group="env", name="sodarace_schema", node=SodaraceEnvConfig)
    cs.store(group="env", name="image_evolution_schema", node=ImageEvolutionEnvConfig)
    cs.store(group="env", name="bin_packing_schema", node=BinPackingEnvConfig)
    cs.store(group="mutator", name="gp_schema", node=GPMutatorConfig)
    cs.store(group="mutator", name="diff_schema", node=DiffMutatorConfig)
    cs.store(group="mutator", name="fim_schema", node=FIMMutatorConfig)
    cs.store(group="mutator", name="rewrite_schema", node=RewriteMutatorConfig)
    cs.store(group="mutator", name="crossover_schema", node=CrossoverMutatorConfig)
    cs.store(group="mutator", name="mixture_schema", node=MixtureMutatorConfig)


CONF_DIR = __import__("pathlib").Path(__file__).resolve().parent.parent / "conf"


def compose(overrides: list[str] | tuple[str, ...] = (), *, config_dir: str | None = None) -> dict:
    """Compose the run config as ``run_elm.py`` would, and return it resolved as plain containers.

    For notebooks and tests: ``elm.runner.run(compose(["budget.evaluations=100"]), run_dir=...)``.
    Raises Hydra's own errors for typos, wrong types and unknown group options.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    register_configs()
    if not OmegaConf.has_resolver("elm_run_dir"):
        OmegaConf.register_new_resolver("elm_run_dir", lambda resume, default: resume or default)
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir or CONF_DIR)):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
