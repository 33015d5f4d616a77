"""The probe set of a callback: given at construction, or drawn at the start of ``fit``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from topo_monitor.probing.measurement import ProbeLike, as_probe
from topo_monitor.probing.probe import ProbeSet, loader_dataset

__all__ = ["given_probe", "training_probe"]


def given_probe(probe: ProbeLike | None) -> ProbeSet | None:
    """The probe set a callback was given, checked now; None when it is drawn at fit start
    (from the given ``Dataset``, or from the training data)."""
    if probe is None or isinstance(probe, Dataset):
        return None
    return as_probe(probe)


def training_probe(
    trainer: Any,
    source: Dataset | None,
    samples_per_class: int,
    seed: int,
    unpack: Callable[[Any], tuple[Any, Any]],
    per_class: bool = True,
) -> ProbeSet:
    """Drawn from ``source``, or else from the dataset of the trainer's training dataloader."""
    if source is None:
        source = loader_dataset(trainer.train_dataloader)
    return ProbeSet.from_dataset(source, samples_per_class, seed, unpack, per_class)
