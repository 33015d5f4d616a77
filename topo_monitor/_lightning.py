"""The one place that chooses between ``lightning.pytorch`` and ``pytorch_lightning``.

A Trainer only accepts callbacks derived from its own package's ``Callback``. When both packages
are installed, our callbacks derive from both base classes, so either Trainer accepts them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from torch.utils.data import Dataset

from topo_monitor.probe import ProbeSet

__all__ = [
    "CALLBACK_BASES",
    "draw_probe",
    "pl",
    "rank_zero_info",
    "rank_zero_warn",
    "tensorboard_writers",
    "train_dataset",
]


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# pytorch_lightning first: it is our declared dependency, and TopologicalEarlyStopping (a
# subclass of one package's EarlyStopping) follows this choice.
_packages = [m for m in (_import("pytorch_lightning"), _import("lightning.pytorch")) if m]
if not _packages:
    raise ImportError("topo_monitor needs pytorch-lightning (>= 2.2) or lightning")

pl = _packages[0]
CALLBACK_BASES: tuple[type, ...] = tuple(m.Callback for m in _packages)

_rank_zero = importlib.import_module(pl.__name__ + ".utilities.rank_zero")
rank_zero_warn = _rank_zero.rank_zero_warn
rank_zero_info = _rank_zero.rank_zero_info


def tensorboard_writers(trainer: Any) -> list[Any]:
    """The SummaryWriters of the trainer's loggers that take figures and layouts."""
    experiments = (getattr(logger, "experiment", None) for logger in trainer.loggers)
    return [e for e in experiments if hasattr(e, "add_figure") and hasattr(e, "add_custom_scalars")]


def draw_probe(
    trainer: Any,
    source: Dataset | None,
    samples_per_class: int,
    seed: int,
    unpack: Callable[[Any], tuple[Any, Any]],
) -> ProbeSet:
    """A callback's probe set, drawn from ``source`` or else from the training dataset."""
    dataset = source if source is not None else train_dataset(trainer)
    return ProbeSet.from_dataset(dataset, samples_per_class, seed, unpack)


def train_dataset(trainer: Any) -> Dataset:
    """The map-style dataset behind the trainer's training dataloader (the first of several)."""
    loader = trainer.train_dataloader
    if isinstance(loader, Mapping):
        loader = next(iter(loader.values()))
    elif isinstance(loader, (list, tuple)):
        loader = loader[0]
    dataset = getattr(loader, "dataset", None)
    if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise ValueError(
            "TopologyMonitor cannot draw a probe set from the training dataloader (no map-style "
            "dataset): pass probe=(inputs, labels) or probe=<Dataset>"
        )
    return dataset
