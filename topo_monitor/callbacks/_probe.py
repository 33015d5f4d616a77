"""The probe set a callback draws at the start of ``fit`` when it was not given one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from topo_monitor.probing.probe import ProbeSet, loader_dataset

__all__ = ["training_probe"]


def training_probe(
    trainer: Any,
    source: Dataset | None,
    samples_per_class: int,
    seed: int,
    unpack: Callable[[Any], tuple[Any, Any]],
) -> ProbeSet:
    """Drawn from ``source``, or else from the dataset of the trainer's training dataloader."""
    if source is None:
        source = loader_dataset(trainer.train_dataloader)
    return ProbeSet.from_dataset(source, samples_per_class, seed, unpack)
