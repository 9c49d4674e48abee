"""The Mutator interface: a batch of parent groups in, a batch of child programs out."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from elm.types import Parent, Proposal, TaskContext

__all__ = ["Lane", "Mutator", "TrainingExample", "build_mutator", "merge_variant"]


@dataclass(frozen=True)
class TrainingExample:
    """One ``(prompt, completion)`` pair in an operator's exact format, for fine-tuning its model.

    ``prompt`` is the exact text the model was (or would have been) given; ``completion`` the text
    that, appended to it, yields the child. For a chat operator ``messages`` holds the conversation
    as ``(role, content)`` pairs, rendered with the model's chat template when training, and
    ``prompt`` is the prefill the reply starts with (often a code fence). ``format`` names the
    operator's format (e.g. ``"rewrite/lines"``), so datasets of different formats are kept apart.
    """

    prompt: str
    completion: str
    format: str
    messages: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not isinstance(self.completion, str) or not self.completion:
            raise ValueError("a TrainingExample needs a prompt string and a non-empty completion string")
        object.__setattr__(self, "messages", tuple((str(r), str(c)) for r, c in self.messages))


@dataclass(frozen=True)
class Lane:
    """One operator the engine runs in its own mutator actor(s): a plugin node, its configured share of
    the children (``weight``), and optional *variants* — named overrides of the node (a temperature, a
    prompt style) that share the lane's actor and model and are chosen per batch.

    ``name`` is what the run store records as the children's ``mutator``.
    """

    name: str
    weight: float
    node: Mapping[str, Any]
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def arms(self) -> list[str]:
        """The lane's operators as ``"lane"`` or ``"lane/variant"`` (the bandit's arms)."""
        return [f"{self.name}/{v}" for v in self.variants] if self.variants else [self.name]


def merge_variant(node: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``node`` with ``overrides`` merged in recursively (mappings merge, other values replace)."""
    out = copy.deepcopy(dict(node))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_variant(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Mutator(ABC):
    """A variation operator over programs (an AST rewriter, a language model...).

    ``parents_per_child`` is how many parents each child draws on (1 for
    mutation, 2+ for crossover); the engine samples that many elites for each
    requested child. Implementations are constructed from their Hydra config
    inside a Ray actor, so constructors take plain keyword arguments.
    """

    #: default name recorded in the run store; a config may override it per instance
    name: ClassVar[str] = "mutator"
    parents_per_child: ClassVar[int] = 1
    #: other elites (besides the parents) the engine shows per child, for context: the best and
    #: diverse ones (:func:`elm.inspirations.choose_inspirations`). When > 0 (an instance may set
    #: it from its config), ``mutate`` is also called with ``inspirations=``: one list per child,
    #: sorted by fitness, lowest first, possibly shorter (a small archive). Not lineage: the run
    #: store records only the parents.
    inspirations: int = 0
    #: True if every child is guaranteed to parse (e.g. it is unparsed from an AST);
    #: the engine then skips its own ``ast.parse`` check of the children.
    checks_syntax: ClassVar[bool] = False

    @abstractmethod
    def mutate(
        self, *, parents: Sequence[Sequence[Parent]], task: TaskContext, seed: int
    ) -> list[Proposal]:
        """Write one child per parent group.

        Args:
            parents: ``len(parents)`` groups, each with ``parents_per_child`` elites.
            task: the environment's description, for prompts.
            seed: seed for this batch (derive all randomness from it, so that a
                seeded run is reproducible).
            inspirations: (only passed to mutators with ``inspirations > 0``, as a
                keyword argument) per child, other elites to show beside its parents.

        Returns:
            Exactly ``len(parents)`` proposals, in order. A child that could not
            be produced is a proposal with ``source=None`` and a status saying
            why; it is recorded, never dropped.
        """

    def close(self) -> None:
        """Release models or connections (default: nothing to release)."""

    def model_version(self) -> str | None:
        """Which weights write this operator's children (``"base"`` or an adapter's version); None for
        an operator without a model that can be fine-tuned in a run (the default)."""
        return None

    def load_adapter(self, path: str) -> str:
        """Load the fine-tuned weights in directory ``path`` (between batches) and return their version.

        On failure the operator must keep writing with the weights it had (raise after restoring
        nothing). Default: ValueError, this operator has no model to fine-tune.
        """
        raise ValueError(f"operator {type(self).__name__} has no model that can load fine-tuned weights; "
                         "set finetune.operator to a language-model lane with the hf backend")

    @classmethod
    def lanes(cls, node: Mapping[str, Any]) -> list[Lane]:
        """The operators in ``node`` (this class's checked config) that may run as separate lanes.

        Default: the whole mutator is one lane named after it. A mixture returns one lane per
        component, so that a slow component (a language model) does not hold back a fast one.
        """
        return [Lane(name=str(node.get("name") or cls.name), weight=1.0, node=node)]

    @classmethod
    def training_example(cls, node: Mapping[str, Any], *, parents: Sequence[Parent], child: str,
                         task: TaskContext, meta: Mapping[str, Any]) -> TrainingExample | None:
        """The ``(prompt, completion)`` pair with which the operator configured by ``node`` writes ``child``.

        Used to fine-tune an operator's model on a run's successful children (``python -m
        mutators.finetune export``). ``meta`` is the child's recorded ``info.mutation`` (empty for
        a child of another operator: then the pair re-expresses that child's change in this
        operator's format, or None when the format cannot express it). Default: None (an operator
        without a language model has no prompt format).
        """
        return None


def build_mutator(node: Mapping[str, Any], *, what: str = "mutator") -> Mutator:
    """Instantiate a mutator from a config node ``{"_target_": "pkg.Class", **arguments}``.

    Raises ValueError naming ``what`` if the class cannot be imported, is not a
    :class:`Mutator`, or does not take the arguments.
    """
    from elm.plugins import PluginSpec

    return PluginSpec.from_config(node, what=what).build(Mutator, what=what)
