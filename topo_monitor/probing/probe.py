"""The probe set: a fixed, class-stratified sample of training inputs, the same every epoch.

It is drawn once with a private generator, so monitoring never consumes the random streams that
training draws from, and so epochs (and runs with the same seed) are comparable.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset, default_collate

__all__ = [
    "MASK_KEY",
    "ProbeSet",
    "class_ids",
    "collate_inputs",
    "dataset_labels",
    "default_unpack",
    "loader_dataset",
    "map_inputs",
]

_SINGLE_INPUT_KEYS = ("input", "inputs", "x", "image", "images")
_LABEL_KEYS = ("label", "labels", "y", "target", "targets")

MASK_KEY = "attention_mask"
"""The field of mapping inputs that marks valid positions (1) and pads (0), as HuggingFace's."""


def default_unpack(item: Any) -> tuple[Any, Any]:
    """Split one dataset item into (input, label).

    ``(x, y, ...)`` tuples and lists give ``x, y``. A mapping gives its label (the first of
    ``label, labels, y, target, targets``; None when it has none) and every other field but
    text (raw strings, ids) as the input: a dict such as ``{"input_ids", "attention_mask"}``
    that the model takes as keywords (``model(**fields)``, HuggingFace's convention), or the
    tensor itself when the one other field is ``input``, ``inputs``, ``x``, ``image`` or
    ``images`` (``model(x)``). For any other
    format pass ``unpack=`` a function of your own, e.g.
    ``lambda item: (item["features"], item["class_id"])``.
    """
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    if isinstance(item, Mapping):
        y_key = next((k for k in _LABEL_KEYS if k in item), None)
        fields = {k: v for k, v in item.items() if k != y_key and not _is_text(v)}
        if fields:
            (only,) = fields if len(fields) == 1 else (None,)
            x = fields[only] if only in _SINGLE_INPUT_KEYS else fields
            return x, None if y_key is None else item[y_key]
    raise ValueError(
        f"cannot find (input, label) in a dataset item of type {type(item).__name__}: give "
        "TopologyMonitor(unpack=...) a function that returns (input, label) for one item"
    )


def _is_text(value: Any) -> bool:
    """Strings (an item's raw text, its id) are not model inputs: tokenized fields are."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    return isinstance(value, (str, bytes))


def collate_inputs(inputs: Sequence[Any], pad_value: int | float = 0) -> Any:
    """Stack the inputs of several items into one batch.

    Mappings of sequences of different lengths (tokenized text) are padded at the end to the
    longest, with ``pad_value`` (the tokenizer's pad id) in every field but :data:`MASK_KEY`,
    which gets 0 there; when the items have no mask and padding was needed, one is added (1 on
    the tokens, 0 on the pads), so that pads never count as positions. Anything else goes
    through ``torch.utils.data.default_collate``.
    """
    if not inputs or not all(isinstance(x, Mapping) for x in inputs):
        return default_collate(list(inputs))
    keys = list(inputs[0])
    values = {k: [torch.as_tensor(x[k]) for x in inputs] for k in keys}
    lengths = {t.shape[-1] if t.dim() else 0 for ts in values.values() for t in ts}
    if len(lengths) <= 1:
        return default_collate(list(inputs))
    longest = max(lengths)
    batch = {}
    for key, tensors in values.items():
        fill = 0 if key == MASK_KEY else pad_value
        batch[key] = torch.stack(
            [torch.nn.functional.pad(t, (0, longest - t.shape[-1]), value=fill) for t in tensors]
        )
    if MASK_KEY not in batch:
        first = values[keys[0]]
        batch[MASK_KEY] = torch.stack([(torch.arange(longest) < t.shape[-1]).long() for t in first])
    return batch


def _as_target(y: Any) -> Any:
    if y is None:
        raise ValueError(
            "a dataset item has no label (no key among label, labels, y, target, targets): give "
            "TopologyMonitor(unpack=...) a function that returns (input, label) for one item, "
            "or per_class=False to measure the probe as one cloud"
        )
    if isinstance(y, torch.Tensor):
        if y.numel() != 1:
            raise ValueError(
                f"a label must be a single class index, got a tensor of shape {tuple(y.shape)} "
                "(soft or one-hot labels?): pass per_class=False, or a probe of class ids"
            )
        return y.item()
    return y


def class_ids(targets: Any) -> np.ndarray | None:
    """The targets as int64 class ids, or None when they are not class ids (non-integer
    values: regression or soft targets; not one value per item)."""
    values = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    if values.ndim != 1 or not (
        np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.bool_)
    ):
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.floating):
            return None
        if not (np.isfinite(values).all() and (values == np.round(values)).all()):
            return None
    return values.astype(np.int64)


def _not_class_ids(targets: np.ndarray) -> ValueError:
    values = np.asarray(targets)
    if values.ndim != 1:
        seen = f"targets of shape {values.shape} (soft or one-hot labels?)"
    else:
        odd = values[~np.isfinite(values) | (values != np.round(values))]
        seen = f"targets such as {odd[0]!r} ({len(np.unique(values))} distinct values)"
    return ValueError(
        f"topology is measured per class, but the training data have {seen}, not integer class "
        "ids. Pass per_class=False to measure the probe as one cloud, or give probe="
        "(inputs, group_ids) with integer groups of your choice (e.g. binned targets)."
    )


def dataset_labels(dataset: Dataset, unpack: Callable[[Any], tuple[Any, Any]]) -> np.ndarray:
    """The target of every item, as stored (class ids are checked by :func:`class_ids`), read
    cheaply where the dataset exposes them.

    ``targets`` (torchvision), ``labels``, the second tensor of a ``TensorDataset`` and
    ``Subset``s of those are read directly; other datasets are indexed item by item.
    """
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset, unpack)[np.asarray(dataset.indices)]
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        targets = dataset.tensors[1].detach().cpu().numpy()
        return targets.reshape(len(dataset)) if targets.size == len(dataset) else targets
    for attr in ("targets", "labels"):
        values = getattr(dataset, attr, None)
        if values is not None and not callable(values):
            labels = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
            if len(labels) == len(dataset):
                return labels
    return np.array([_as_target(unpack(dataset[i])[1]) for i in range(len(dataset))])


@dataclass
class ProbeSet:
    """Inputs and labels of the probe set, kept on the CPU.

    Attributes
    ----------
    inputs : torch.Tensor or a collated structure of tensors, first dimension n
    labels : torch.Tensor, shape (n,), int64
        Class ids (or the groups a user gave); all 0 for a probe drawn with ``per_class=False``
        from targets that are not class ids.
    indices : numpy.ndarray or None
        Positions in the dataset the probe was drawn from (None for user-given tensors).
    classified : bool
        Whether ``labels`` are the classes the model's outputs score (False for the one group of
        a probe of non-class targets): the output margin is computed only then.
    """

    inputs: Any
    labels: torch.Tensor
    indices: np.ndarray | None = None
    classified: bool = True

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.labels.numpy())

    @classmethod
    def from_tensors(cls, inputs: torch.Tensor, labels: torch.Tensor | Sequence[int]) -> ProbeSet:
        """The probe ``inputs`` with integer class ids (or groups) ``labels``."""
        ids = class_ids(labels)
        if ids is None:
            raise _not_class_ids(np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels))
        labels = torch.as_tensor(ids)
        if not isinstance(inputs, torch.Tensor) or len(inputs) != len(labels):
            raise ValueError(
                f"probe inputs must be a tensor with one row per label; got "
                f"{type(inputs).__name__} of length {len(inputs)} for {len(labels)} labels"
            )
        return cls(inputs.detach().cpu(), labels)

    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        samples_per_class: int,
        seed: int = 0,
        unpack: Callable[[Any], tuple[Any, Any]] = default_unpack,
        per_class: bool = True,
        pad_value: int | float = 0,
        max_inputs: int | None = None,
    ) -> ProbeSet:
        """Draw ``samples_per_class`` items per class (all of a smaller class, with a warning).

        Targets that are not integer class ids (regression, soft labels, token sequences) or no
        targets at all are an error, unless ``per_class=False``: then ``samples_per_class`` items
        are drawn in all, as one group. Mapping items are collated with :func:`collate_inputs`
        (``pad_value`` pads token sequences). With ``max_inputs``, when the classes would give
        more inputs, classes are drawn at random (with ``seed``) until the next would exceed it,
        with one warning: the probe's ``classes`` are those drawn.
        """
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("cannot draw a probe set from an empty dataset")
        try:
            targets = dataset_labels(dataset, unpack)
        except ValueError:  # items without a (class) label
            if per_class:
                raise
            targets = None
        labels = None if targets is None else class_ids(targets)
        classified = labels is not None
        if labels is None:
            if per_class:
                raise _not_class_ids(targets)
            labels = np.zeros(len(dataset), dtype=np.int64)  # type: ignore[arg-type]
        rng = np.random.default_rng(seed)
        classes = _within_budget(labels, samples_per_class, max_inputs, seed)
        chosen, short = [], []
        for c in classes:
            members = np.flatnonzero(labels == c)
            if len(members) < samples_per_class:
                short.append(f"{c} ({len(members)})")
            take = min(samples_per_class, len(members))
            chosen.append(np.sort(rng.choice(members, size=take, replace=False)))
        if short:
            listed = ", ".join(short[:10]) + (
                f", ... ({len(short)} classes)" if len(short) > 10 else ""
            )
            warnings.warn(
                f"probe set: classes {listed} have fewer than samples_per_class="
                f"{samples_per_class} items; all of their items are used",
                UserWarning,
                stacklevel=2,
            )
        indices = np.concatenate(chosen)
        items = [unpack(dataset[int(i)]) for i in indices]
        inputs = collate_inputs([x for x, _ in items], pad_value)
        return cls(inputs, torch.as_tensor(labels[indices]), indices, classified)

    def batches(self, batch_size: int) -> Iterator[Any]:
        """The inputs in consecutive batches (tensors, or the same structure as the inputs)."""
        for start in range(0, len(self), batch_size):
            yield _index(self.inputs, slice(start, start + batch_size))

    def shard(self, rank: int, world_size: int) -> ProbeSet:
        """Rank ``rank``'s share of the probe for a forward pass split over ``world_size``
        ranks: the ``rank``-th block of ``ceil(n / world_size)`` consecutive items, padded to
        that size by repeating the last item. Every rank thus runs the same number of
        equal batches (a sharded model's forward is a collective), and the concatenated
        outputs of ranks 0, 1, ... cut to ``n`` rows are the outputs in probe order."""
        size = -(-len(self) // world_size)
        rows = torch.arange(rank * size, (rank + 1) * size).clamp(max=len(self) - 1)
        return ProbeSet(_index(self.inputs, rows), self.labels[rows], None, self.classified)


def map_inputs(
    inputs: Any, tensor: Callable[[torch.Tensor], Any], other: Callable[[Any], Any] | None = None
) -> Any:
    """``inputs`` with ``tensor`` applied to each tensor of its structure (mappings, lists and
    tuples, rebuilt as they were) and ``other`` to anything else (default: a TypeError)."""
    if isinstance(inputs, torch.Tensor):
        return tensor(inputs)
    if isinstance(inputs, Mapping):
        return {k: map_inputs(v, tensor, other) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(map_inputs(v, tensor, other) for v in inputs)
    if other is None:
        raise TypeError(f"cannot batch probe inputs of type {type(inputs).__name__}")
    return other(inputs)


def _index(inputs: Any, index: slice | torch.Tensor) -> Any:
    """The rows ``index`` of every tensor of the inputs' structure."""
    return map_inputs(inputs, lambda t: t[index])


def _within_budget(
    labels: np.ndarray, samples_per_class: int, max_inputs: int | None, seed: int
) -> np.ndarray:
    """The classes the probe is drawn from: all of them, or those drawn at random until the
    probe would exceed ``max_inputs`` (at least one class, at most ``max_inputs`` of its items)."""
    classes, counts = np.unique(labels, return_counts=True)
    sizes = np.minimum(counts, samples_per_class)
    if max_inputs is None or sizes.sum() <= max_inputs:
        return classes
    order = np.random.default_rng([seed, 1]).permutation(len(classes))
    kept = order[: max(1, int(np.searchsorted(np.cumsum(sizes[order]), max_inputs, "right")))]
    drawn = np.sort(classes[kept])
    listed = ", ".join(str(c) for c in drawn[:10]) + (", ..." if len(drawn) > 10 else "")
    warnings.warn(
        f"probe set: {len(classes)} classes of up to samples_per_class={samples_per_class} items "
        f"would give {int(sizes.sum())} inputs, over max_probe_inputs={max_inputs}: "
        f"{len(drawn)} classes drawn at random (seed {seed}): {listed} (the probe's and every "
        "record's classes list them). Lower samples_per_class to cover more classes, or raise "
        "max_probe_inputs",
        UserWarning,
        stacklevel=3,
    )
    return drawn


def loader_dataset(loader: Any) -> Dataset:
    """The map-style dataset behind a dataloader, or behind the first of several (a list or a
    dict of loaders, as Lightning's ``trainer.train_dataloader`` may be): a probe set's source."""
    if isinstance(loader, Mapping):
        loader = next(iter(loader.values()))
    elif isinstance(loader, (list, tuple)):
        loader = loader[0]
    dataset = getattr(loader, "dataset", None)
    if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise ValueError(
            "cannot draw a probe set from the training dataloader (no map-style dataset): pass "
            "probe=(inputs, labels) or probe=<Dataset>"
        )
    return dataset
