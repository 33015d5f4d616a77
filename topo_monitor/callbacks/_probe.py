"""The probe set of a callback: given at construction, or drawn at the start of ``fit``."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from topo_monitor._lightning import rank_zero_info
from topo_monitor.probing.measurement import ProbeLike, as_probe
from topo_monitor.probing.probe import (
    ProbeSet,
    class_ids,
    collate_inputs,
    loader_dataset,
    map_inputs,
)

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


STREAM_READ_FACTOR = 20
"""A probe drawn from a stream reads at most this many times ``samples_per_class`` items (times
the classes seen), stopping as soon as every class seen has its share."""


def training_probe(
    trainer: Any,
    source: Dataset | None,
    samples_per_class: int,
    seed: int,
    unpack: Callable[[Any], tuple[Any, Any]],
    per_class: bool = True,
    pad_value: int | float = 0,
    max_inputs: int | None = None,
) -> ProbeSet:
    """Drawn from ``source``, or else from the dataset of the trainer's training dataloader; from
    the first batches of that loader when its data are a stream (an ``IterableDataset``)."""
    if source is None:
        loader = trainer.train_dataloader
        if isinstance(getattr(_first(loader), "dataset", None), IterableDataset):
            return stream_probe(
                _first(loader), samples_per_class, unpack, per_class, pad_value, max_inputs
            )
        source = loader_dataset(loader)
    return ProbeSet.from_dataset(
        source, samples_per_class, seed, unpack, per_class, pad_value, max_inputs
    )


def _first(loader: Any) -> Any:
    """The first of several loaders (a list or a dict, as Lightning's may be)."""
    if isinstance(loader, Mapping):
        return next(iter(loader.values()))
    if isinstance(loader, (list, tuple)):
        return loader[0]
    return loader


def stream_probe(
    loader: Iterable[Any],
    samples_per_class: int,
    unpack: Callable[[Any], tuple[Any, Any]],
    per_class: bool = True,
    pad_value: int | float = 0,
    max_inputs: int | None = None,
) -> ProbeSet:
    """A probe from the first batches of a stream: the first ``samples_per_class`` items of each
    class (of all, with ``per_class=False``), as class-balanced as the stream allows.

    It iterates a fresh iterator of ``loader`` (the training loop's own is untouched) under
    saved random states (a stream that draws random numbers leaves training's streams as they
    were), and says in one info line how many items it read.
    """
    rows: list[tuple[Any, int]] = []
    taken: dict[int, int] = {}
    read, classified = 0, True
    with _saved_random_state():
        for batch in loader:
            inputs, labels = unpack(batch)
            ids = None if labels is None else class_ids(labels)
            if ids is None and per_class:
                raise ValueError(
                    "the training stream's labels are not class ids: pass per_class=False, or "
                    "probe=(inputs, group_ids)"
                )
            classified = classified and ids is not None
            labels = ids.tolist() if ids is not None else [0] * _batch_size(inputs)
            for i, label in enumerate(labels):
                read += 1
                group = label if per_class else 0  # per_class=False: one group of all items
                if taken.get(group, 0) < samples_per_class:
                    taken[group] = taken.get(group, 0) + 1
                    rows.append((_row(inputs, i), label))
            full = all(count >= samples_per_class for count in taken.values())
            full = full or (max_inputs is not None and len(rows) >= max_inputs)
            if full or read >= STREAM_READ_FACTOR * samples_per_class * max(len(taken), 1):
                break
    if not rows:
        raise ValueError("the training stream gave no items: pass probe=(inputs, labels)")
    short = sorted(c for c, count in taken.items() if count < samples_per_class)
    kept = f"{len(rows)} of the first {read} items"
    if per_class:
        kept += f", {len(taken)} class(es)"
        if short:
            kept += f"; classes {short[:10]} have fewer than {samples_per_class}"
    rank_zero_info(f"TopologyMonitor: probe drawn from the training stream: {kept}")
    rows = rows[:max_inputs]
    labels = torch.tensor([label for _, label in rows])
    return ProbeSet(collate_inputs([x for x, _ in rows], pad_value), labels, None, classified)


def _batch_size(inputs: Any) -> int:
    if isinstance(inputs, Mapping):
        return _batch_size(next(iter(inputs.values())))
    if isinstance(inputs, (list, tuple)):
        return _batch_size(inputs[0])
    return len(inputs)


def _row(inputs: Any, i: int) -> Any:
    """Item ``i`` of a collated batch: a row of every tensor (pads of mapping fields kept, their
    mask with them)."""
    return map_inputs(inputs, lambda t: t[i].detach().cpu(), lambda other: other[i])


@contextmanager
def _saved_random_state() -> Iterator[None]:
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002 (global stream)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
