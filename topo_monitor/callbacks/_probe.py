"""The probe set of a callback: given at construction, or drawn at the start of ``fit``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils.data import Dataset

from topo_monitor.probing.measurement import ProbeLike, as_probe
from topo_monitor.probing.probe import ProbeSet, loader_dataset

__all__ = ["given_probe", "probe_fingerprint", "training_probe"]


def given_probe(probe: ProbeLike | None) -> ProbeSet | None:
    """The probe set a callback was given, checked now; None when it is drawn at fit start
    (from the given ``Dataset``, or from the training data)."""
    if probe is None or isinstance(probe, Dataset):
        return None
    return as_probe(probe)


def probe_fingerprint(probe: ProbeLike) -> str:
    """Eight hex digits that tell probes apart: of the labels and inputs of tensors and probe
    sets, of the type and length of a dataset (drawn only at fit start)."""
    digest = hashlib.sha1()
    if isinstance(probe, Dataset) and not isinstance(probe, ProbeSet):
        digest.update(f"{type(probe).__qualname__}:{len(probe)}".encode())  # type: ignore[arg-type]
    else:
        probe = as_probe(probe)
        for tensor in (probe.labels, *_tensors(probe.inputs)):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:8]


def _tensors(inputs: Any) -> list[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        return [inputs]
    if isinstance(inputs, Mapping):
        return [t for key in sorted(inputs) for t in _tensors(inputs[key])]
    if isinstance(inputs, (list, tuple)):
        return [t for item in inputs for t in _tensors(item)]
    return []


def training_probe(
    trainer: Any,
    source: Dataset | None,
    samples_per_class: int,
    seed: int,
    unpack: Callable[[Any], tuple[Any, Any]],
    per_class: bool = True,
    pad_value: int | float = 0,
) -> ProbeSet:
    """Drawn from ``source``, or else from the dataset of the trainer's training dataloader."""
    if source is None:
        source = loader_dataset(trainer.train_dataloader)
    return ProbeSet.from_dataset(source, samples_per_class, seed, unpack, per_class, pad_value)
