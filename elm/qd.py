"""Building a run's archive and parent selector from its config and its environment's descriptor space."""

from __future__ import annotations

from elm.archive import Archive, CVTArchive, GridArchive
from elm.config import QDConfig
from elm.selection import ParentSelector, make_selector
from elm.types import DescriptorSpace

__all__ = ["build_archive", "build_selector", "descriptor_space_for"]


def descriptor_space_for(env_space: DescriptorSpace, qd: QDConfig) -> DescriptorSpace:
    """Apply ``qd.bins`` / ``qd.bounds`` overrides to the environment's descriptor space."""
    bins = qd.bins or env_space.bins
    bounds = qd.bounds
    if bounds is not None:
        if len(bounds) != env_space.dims or any(len(b) != 2 for b in bounds):
            raise ValueError(
                f"qd.bounds must be {env_space.dims} pairs [lower, upper] (one per descriptor "
                f"{list(env_space.names)}), got {bounds}"
            )
        lower, upper = [b[0] for b in bounds], [b[1] for b in bounds]
    else:
        lower, upper = env_space.lower, env_space.upper
    if len(bins) != env_space.dims:
        raise ValueError(
            f"qd.bins has {len(bins)} entries but the environment has {env_space.dims} descriptors "
            f"{list(env_space.names)}"
        )
    return DescriptorSpace(names=env_space.names, lower=tuple(lower), upper=tuple(upper), bins=tuple(bins))


def build_archive(space: DescriptorSpace, qd: QDConfig, *, seed: int, qd_offset: float = 0.0) -> Archive:
    """The archive ``qd`` describes; ``qd_offset`` is used when ``qd.qd_offset`` is None (the environment's)."""
    common = dict(qd_offset=qd_offset if qd.qd_offset is None else qd.qd_offset, out_of_bounds=qd.out_of_bounds)
    if qd.kind == "grid":
        return GridArchive(space=space, **common)
    if qd.kind == "cvt":
        return CVTArchive(space=space, cells=qd.cells, samples=qd.cvt_samples, seed=seed, **common)
    raise ValueError(f"qd.kind must be 'grid' or 'cvt', got {qd.kind!r}")


def build_selector(qd: QDConfig) -> ParentSelector:
    """The parent selector ``qd.selection`` names (a built-in name or a ParentSelector class path)."""
    return make_selector(qd.selection, **dict(qd.selection_args))
