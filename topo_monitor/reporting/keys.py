"""The names of logged scalars: ``topology/<metric>/<block>``, their aliases, per-network values.

Built here only, for every writer and reader: the monitor's ``trainer.callback_metrics``, the
loggers and their TensorBoard layout, and the callbacks that read them (early stopping, the
predicted test accuracy).
"""

from __future__ import annotations

import re

from topo_monitor.probing.record import TopologyRecord

__all__ = ["ALIASES", "PREFIX", "layout_pattern", "record_scalars", "scalar_key", "split_key"]

PREFIX = "topology"

ALIASES = {"last": -1, "last_hidden": -2}
"""Block aliases: the model output, and the block before it."""


def scalar_key(metric: str, block: str | None = None, prefix: str = PREFIX) -> str:
    """``<prefix>/<metric>/<block>`` for a per-block value, ``<prefix>/<metric>`` for a
    per-network one (``block=None``)."""
    return f"{prefix}/{metric}" if block is None else f"{prefix}/{metric}/{block}"


def split_key(key: str) -> tuple[str, str, str | None] | None:
    """``(prefix, metric, block)`` of a key made by :func:`scalar_key` with :data:`PREFIX` or a
    monitor's ``topology_<name>`` (block None for a per-network value); None for anything else."""
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) not in (2, 3) or not all(parts) or not re.fullmatch(rf"{PREFIX}(_.+)?", parts[0]):
        return None
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def layout_pattern(metric: str, prefix: str = PREFIX) -> str:
    """The regular expression of every block's key of ``metric`` (a Custom Scalars chart)."""
    return f"^{re.escape(prefix)}/{re.escape(metric)}/"


def record_scalars(
    record: TopologyRecord, prefix: str = PREFIX, aliases: bool = False
) -> dict[str, float]:
    """Every value of a record under its key, NaN included (writers drop what they cannot take):
    per block, and with ``aliases`` also under :data:`ALIASES` (``last_hidden`` only when there
    is a block before the output); per network."""
    out = {}
    for metric, values in record.values.items():
        for block, value in zip(record.blocks, values, strict=True):
            out[scalar_key(metric, block, prefix)] = float(value)
        if aliases:
            for alias, index in ALIASES.items():
                if len(values) >= -index:
                    out[scalar_key(metric, alias, prefix)] = float(values[index])
    for name, value in record.network.items():
        out[scalar_key(name, None, prefix)] = float(value)
    return out
