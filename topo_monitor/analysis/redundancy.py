"""Redundant blocks: adjacent blocks whose representations have the same H0 topology (lesson 003).

If a block's scale-free H0 diagrams are nearly those of the block before it, the block changes
little but the position, orientation or size of the cloud: a candidate for removal ("topological
model compression"). The distance is the record's ``H0_bottleneck_prev_block``, measured with the
``"sw"`` metric group.
"""

from __future__ import annotations

from topo_monitor._validation import as_positive, check
from topo_monitor.probing.record import TopologyRecord
from topo_monitor.probing.summary import BOTTLENECK

__all__ = ["REDUNDANCY_THRESHOLD", "redundant_blocks"]

REDUNDANCY_THRESHOLD = 0.05
"""Default of :func:`redundant_blocks`, in RMS radii of the clouds (the diagrams are scale-free).

Measured on ReLU MLPs on digits (widths 48-256, 3 seeds, 20-180 probe inputs per class): adjacent
distinct blocks are 0.06-0.30 apart, untrained (the least: 0.06-0.09 at width 256) or trained to
100 % accuracy (0.09 and more); a block ``ReLU(W x + b)`` after a ReLU block is 0 apart with
W = I, b = 0, and 0.03, 0.05-0.065, 0.06-0.09 apart with W = I + εN (N Gaussian, spectral norm
≈ 2) for ε = 0.1, 0.2, 0.3. The default flags blocks within about ε = 0.2 of an identity.

The distance compares shapes, not contents: two unrelated clouds with the same featureless shape
look alike. Two independent samples of one isotropic Gaussian (per class 30-1000 points) are
0.04-0.07 apart in dimension 64 and 0.03 in dimension 256, 0.10-0.16 in dimension 8-16.
"""


def redundant_blocks(
    record: TopologyRecord, threshold: float = REDUNDANCY_THRESHOLD
) -> list[tuple[str, str, float]]:
    """The adjacent blocks whose scale-free H0 diagrams are closer than ``threshold``.

    Parameters
    ----------
    record : TopologyRecord
        Measured with ``"sw"`` in its metrics (the default), in memory or read back from a
        history file.
    threshold : float, default :data:`REDUNDANCY_THRESHOLD`
        Largest class-averaged bottleneck distance between the blocks' H0 diagrams, each divided
        by its cloud's RMS radius.

    Returns
    -------
    list of (previous block, block, distance)
        In execution order. Pairs whose distance is NaN (the first block, a block with NaN
        activations or a collapsed cloud) are never listed.

    Raises
    ------
    ValueError
        If the record has no ``H0_bottleneck_prev_block`` values, or ``threshold`` is not a
        positive finite number.
    """
    check(
        BOTTLENECK in record.values,
        f'the record has no {BOTTLENECK} values: measure with "sw" in metrics '
        f"(it has {sorted(record.values)})",
    )
    threshold = as_positive(threshold, "threshold")
    distances = record.values[BOTTLENECK]
    return [
        (record.blocks[b - 1], record.blocks[b], distances[b])
        for b in range(1, len(record.blocks))
        if distances[b] < threshold
    ]
