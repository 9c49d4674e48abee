"""ELM engine: archive, run store, Ray loop and the interfaces other packages implement."""

from elm.environment import Environment, InvalidProgram, load_entry_point
from elm.mutator import Mutator
from elm.sandbox import EnvironmentSpec, Sandbox, SandboxLimits, SandboxUnavailable
from elm.types import (
    SEED_MUTATOR,
    AddStatus,
    DescriptorSpace,
    Elite,
    EvalRequest,
    EvalResult,
    EvalStatus,
    Evaluation,
    MutationStatus,
    Parent,
    Proposal,
    TaskContext,
)

__all__ = [
    "AddStatus",
    "DescriptorSpace",
    "Elite",
    "Environment",
    "EnvironmentSpec",
    "EvalRequest",
    "EvalResult",
    "EvalStatus",
    "Evaluation",
    "InvalidProgram",
    "Mutator",
    "MutationStatus",
    "Parent",
    "Proposal",
    "SEED_MUTATOR",
    "Sandbox",
    "SandboxLimits",
    "SandboxUnavailable",
    "TaskContext",
    "load_entry_point",
]
