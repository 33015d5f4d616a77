"""Private randomness for subsamples: reproducible, and never drawn from the global streams.

Monitoring runs inside the user's training process; drawing from the global torch/NumPy streams
would change what training draws next. Every random choice here goes through a private generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["Generatorish", "as_generator", "random_orders"]

Generatorish = torch.Generator | np.random.Generator | int | None


def as_generator(generator: Generatorish) -> torch.Generator | np.random.Generator:
    """A private random generator: an int is a seed, ``None`` means seed 0.

    Results are reproducible and the global RNG streams (those training draws from) stay untouched.
    Convert once per public call: seeding again for every draw would repeat the same draw.
    """
    if isinstance(generator, (torch.Generator, np.random.Generator)):
        return generator
    if generator is None or isinstance(generator, (int, np.integer)):
        return torch.Generator().manual_seed(0 if generator is None else int(generator))
    raise TypeError(
        "generator must be a torch.Generator, numpy.random.Generator, int seed or None, "
        f"got {type(generator).__name__}"
    )


def random_orders(
    counts: Sequence[int], length: int, generator: torch.Generator | np.random.Generator
) -> torch.Tensor:
    """Uniformly random orderings of several index ranges, all drawn at once.

    Parameters
    ----------
    counts : sequence of R ints
        Row ``r`` orders ``range(counts[r])``.
    length : int
        How many leading indices of each ordering to keep, at most ``max(counts)``. The first
        ``k <= counts[r]`` of row ``r`` are a uniform random subsample of size ``k``; positions
        from ``counts[r]`` on hold the indices ``counts[r], ..., max(counts) - 1`` (padding of
        clouds stacked to the largest, see :func:`topo_monitor.tda.mst.subcloud_mst_lengths`).
    generator : torch.Generator or numpy.random.Generator

    Returns
    -------
    torch.Tensor, shape (R, length), int64, on the CPU
    """
    counts = np.asarray(counts, dtype=np.int64)
    shape = (len(counts), int(counts.max(initial=0)))
    if length > shape[1]:
        raise ValueError(f"cannot draw {length} distinct points from {shape[1]}")
    if isinstance(generator, np.random.Generator):
        keys = torch.from_numpy(generator.random(shape))
    else:
        keys = torch.rand(shape, generator=generator, dtype=torch.float64)
    padding = torch.arange(shape[1], dtype=torch.float64)
    keys = torch.where(padding < torch.from_numpy(counts)[:, None], keys, 2.0 + padding)
    return keys.argsort(dim=1)[:, :length]
