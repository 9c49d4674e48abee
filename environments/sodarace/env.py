"""The Sodarace environment: evolve programs that build walkers which travel far."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from elm.environment import Environment, InvalidProgram, load_entry_point
from elm.types import DescriptorSpace, Evaluation, TaskContext
from environments.sodarace.physics import DT, MUSCLE_HZ, SETTLE_S, TERRAINS, simulate
from environments.sodarace.seeds import SEEDS
from environments.sodarace.walker import RULES, Walker, check_walker, walker_mass

__all__ = ["Sodarace"]

#: top of the mass descriptor's range: most walkers weigh 1-40 kg; heavier ones (allowed up to
#: RULES.max_mass) share the top bin, so the 12 bins stay fine where the walkers are
MASS_AXIS_KG = 40.0

API_DOC = f'''from environments.sodarace import Walker

w = Walker()
i = w.add_joint(x, y)          # a joint (point mass) at (x, y) metres, y up; returns its index 0, 1, 2...
w.add_bone(i, j)               # a rigid bone keeping joints i and j at their distance as built
w.add_muscle(i, j, amplitude=0.3, phase=0.25)
                               # a stiff spring whose rest length oscillates at {MUSCLE_HZ:g} Hz:
                               # L0 * (1 + amplitude * sin(2 pi ({MUSCLE_HZ:g} t + phase))),
                               # 0 <= amplitude <= {RULES.max_amplitude}, phase in cycles
w.joints                       # tuple of (x, y) so far

def make_walker() -> Walker:
    """Build and return the walker."""

The ELM paper's API works too: `from environments.sodarace.openelm import walker_creator`;
wc = walker_creator(); j = wc.add_joint(x, y) (units of 0.22 m); wc.add_muscle(j0, j1, amplitude, phase)
(amplitude 0 and phase 0: a bone); return wc.get_walker().

Rules (otherwise the walker is invalid): {RULES.min_joints}-{RULES.max_joints} joints; at most \
{RULES.max_bones} bones and {RULES.max_muscles} muscles; at most {RULES.max_connections_per_joint} \
bones + muscles per joint; every two joints at least {RULES.min_joint_distance} m apart; the whole \
walker within {RULES.max_size} m x {RULES.max_size} m; all joints connected into one body; total mass \
(0.1 kg per joint + 1 kg per metre of bone or muscle) at most {RULES.max_mass:g} kg. Bones are rigid.
'''


class Sodarace(Environment):
    """Build a walker from joints, bones and muscles that travels as far as possible.

    A program defines ``make_walker()`` returning a
    :class:`~environments.sodarace.Walker`. The walker is simulated (see
    :mod:`environments.sodarace.physics`) on ``terrain`` for ``duration_s``
    simulated seconds: 1 s of settling with locked muscles, then its muscles
    work for the rest.

    Fitness: sustained travel in metres (either way) while the muscles work:
    the centre of mass is averaged over each muscle cycle (0.5 s), and the
    median progress from one cycle to the next times the number of cycles is
    the score (:func:`~environments.sodarace.physics.sustained_travel`). So a
    gait scores the distance it covers at its typical pace, where the run
    happens to stop in the cycle does not matter, and a body without a gait
    scores about 0 even when it topples or folds once, whatever its shape or
    where it was built.

    Descriptors (of the walker as built), default grid 12 x 12 x 12:

    * ``height`` in [0, 4] m: vertical extent of its joints;
    * ``width`` in [0, 4] m: horizontal extent of its joints;
    * ``mass`` in [0, 40] kg: 0.1 kg per joint plus 1 kg per metre of bones
      and muscles. The rules allow up to 1,000 kg (dense lattices such as
      the ELM paper's runner weigh hundreds); heavier than 40 kg lands in
      the top mass bin (``qd.out_of_bounds=clip``, the default).

    Programs written against the ELM paper's / OpenELM's ``walker_creator``
    API run through :mod:`environments.sodarace.openelm` (change only their
    import line).

    Validity rules: :class:`~environments.sodarace.walker.WalkerRules`; an
    invalid walker gets status ``invalid`` with the rule it broke.

    Args:
        terrain: ``"flat"`` (default), ``"hills"`` or ``"uphill"`` (see
            :data:`~environments.sodarace.physics.TERRAINS`).
        duration_s: simulated seconds per evaluation, settling included
            (default 10: 9 s = 18 muscle cycles of locomotion).
    """

    name: ClassVar[str] = "sodarace"
    entry_point: ClassVar[str] = "make_walker"
    # warm: compiles the simulation kernel once in the fork server, before it forks the scorers
    preload: ClassVar[tuple[str, ...]] = ("numpy", "environments.sodarace", "environments.sodarace.openelm",
                                          "environments.sodarace.warm")

    def __init__(self, *, terrain: str = "flat", duration_s: float = 10.0) -> None:
        if terrain not in TERRAINS:
            raise ValueError(f"unknown terrain {terrain!r}; choose one of {sorted(TERRAINS)}")
        if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)):
            raise TypeError(f"duration_s must be a number of seconds, got {duration_s!r}")
        if not (math.isfinite(duration_s) and SETTLE_S + 1.0 <= duration_s <= 600.0):
            raise ValueError(
                f"duration_s must be between {SETTLE_S + 1.0:g} and 600 simulated seconds "
                f"(it includes {SETTLE_S:g} s of settling), got {duration_s!r}"
            )
        self.terrain = terrain
        self.duration_s = float(duration_s)

    def __repr__(self) -> str:
        return f"Sodarace(terrain={self.terrain!r}, duration_s={self.duration_s:g})"

    @property
    def descriptor_space(self) -> DescriptorSpace:
        return DescriptorSpace(
            names=("height", "width", "mass"),
            lower=(0.0, 0.0, 0.0),
            upper=(RULES.max_size, RULES.max_size, MASS_AXIS_KG),
            bins=(12, 12, 12),
        )

    def seed_programs(self) -> Sequence[str]:
        """Six walkers: square, radial, wheel, runner, galloper, CPPN-style lattice."""
        return list(SEEDS.values())

    def task(self) -> TaskContext:
        return TaskContext(
            name=self.name,
            entry_point=self.entry_point,
            signature="def make_walker() -> Walker:",
            description=(
                "Sodarace: write a Python function `make_walker()` that builds a 2-D walker from joints, "
                "bones and muscles with the `Walker` API and returns it. The walker is dropped on "
                f"{TERRAINS[self.terrain]} under gravity and simulated for {self.duration_s:g} s; after "
                f"{SETTLE_S:g} s of settling its muscles start to contract and relax at {MUSCLE_HZ:g} Hz, "
                "each with its own amplitude and phase. Bones are rigid; muscles are stiff springs. The score "
                "is the distance in metres its centre of mass travels (left or right) at a steady pace, "
                "cycle after cycle, while the muscles work (falling over once earns nothing), so muscles "
                "must be arranged and phased into a gait: rolling, hopping, crawling or walking. "
                "Joints touching the ground "
                "grip it by friction. Import the API with `from environments.sodarace import Walker`; "
                "`math` and `numpy` may be used. The program must be deterministic."
            ),
            api_doc=API_DOC,
        )

    def execute(self, source: str) -> Any:
        """Run ``make_walker()`` and return the walker's JSON form (checked again in :meth:`score`)."""
        fn = load_entry_point(source, self.entry_point)
        walker = fn()
        if not isinstance(walker, Walker):
            raise InvalidProgram(
                f"make_walker() must return a Walker (from environments.sodarace import Walker), "
                f"got {type(walker).__name__}"
            )
        return walker.to_dict()

    def score(self, output: Any) -> Evaluation:
        """Check the walker against the rules, simulate it, and score the distance travelled."""
        walker = check_walker(output)
        try:
            rollout = simulate(walker, terrain=self.terrain, duration_s=self.duration_s)
        except FloatingPointError as exc:
            raise InvalidProgram(f"the walker made the simulation unstable ({exc})") from None
        xy = walker.joints
        width = float(xy[:, 0].max() - xy[:, 0].min())
        height = float(xy[:, 1].max() - xy[:, 1].min())
        mass = math.fsum(walker_mass(walker).tolist())
        n_muscles = len(walker.a) - walker.n_bones
        return Evaluation(
            fitness=rollout.distance,
            descriptor=(height, width, mass),
            info={
                "distance_m": rollout.distance,
                "net_displacement_m": rollout.net_displacement,
                "direction": 1 if rollout.net_displacement >= 0 else -1,
                "settle_shift_m": rollout.com_start,
                "max_bone_strain": rollout.max_bone_strain,
                "joints": int(len(xy)),
                "bones": int(walker.n_bones),
                "muscles": int(n_muscles),
                "terrain": self.terrain,
                "simulated_s": rollout.steps * DT,
                "speed_m_per_s": rollout.distance / max(self.duration_s - SETTLE_S, 1e-9),
            },
        )

    def rollout(self, source: str) -> np.ndarray:
        """Joint positions over time of the walker ``source`` builds: shape (steps + 1, n, 2), metres.

        For looking at a walker (plotting, animating) in your own process; runs
        the program without a sandbox, so use it only on programs you trust.
        """
        walker = check_walker(self.execute(source))
        return simulate(walker, terrain=self.terrain, duration_s=self.duration_s, record=True).trajectory
