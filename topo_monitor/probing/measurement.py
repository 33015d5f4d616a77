"""``measure``: the one function from a model and a probe set to a :class:`TopologyRecord`.

Everything that measures a model goes through it: the :class:`~topo_monitor.TopologyMonitor`
callback every epoch, :func:`~topo_monitor.adversarial_topology` on attacked inputs, the
benchmarks, and a user's loop over saved checkpoints. No Lightning here.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from topo_monitor._validation import check, is_positive_int
from topo_monitor.probing.baselines import mean_margin, param_norm
from topo_monitor.probing.blocks import OUTPUT, resolve_blocks
from topo_monitor.probing.config import SummaryConfig, summary_config
from topo_monitor.probing.hooks import collect_clouds, preserved_state
from topo_monitor.probing.probe import ProbeSet, default_unpack
from topo_monitor.probing.problems import warn_problems
from topo_monitor.probing.record import TopologyRecord
from topo_monitor.probing.reduction import REDUCTIONS, Reducer
from topo_monitor.probing.summary import summarize

__all__ = [
    "MAX_CLOUD_BYTES",
    "BlocksSpec",
    "ProbeLike",
    "ProbeSharding",
    "as_probe",
    "check_cloud_bytes",
    "measure",
]

MAX_CLOUD_BYTES = 2 * 2**30
"""Default budget for the reduced clouds of one measurement (2 GiB): a ResNet-18 probe of 1000
images at 224x224 with ``reduction="flatten"`` needs 18.8 GB; beside a training run, a monitor
must stop with a clear error before it lets the operating system kill the run."""


def check_cloud_bytes(per_input: Mapping[str, float], inputs: int, budget: int | None) -> None:
    """Raise a ValueError when the clouds of ``inputs`` probe inputs, at ``per_input`` bytes
    each per block, would exceed ``budget``, naming the largest block and what would fit."""
    if budget is None:
        return
    total = sum(per_input.values()) * inputs
    if total <= budget:
        return
    block, largest = max(per_input.items(), key=lambda item: item[1])
    fitting = int(budget // max(sum(per_input.values()), 1.0))
    raise ValueError(
        f"topo_monitor: the clouds of {inputs} probe inputs would take {total / 1e9:.2f} GB, over "
        f"max_cloud_bytes={budget / 1e9:.2f} GB: block {block!r} alone keeps "
        f'{largest / 1e3:.1f} kB per input. What fits: reduction="gap" (one channel vector '
        f'per input) or "spatial_random" (a few), or at most {fitting} probe inputs '
        "(samples_per_class, max_probe_inputs), or fewer blocks; or raise max_cloud_bytes"
    )


BlocksSpec = str | Sequence[str] | Callable[[nn.Module], Iterable[str | nn.Module]]
ProbeLike = ProbeSet | tuple[torch.Tensor, Any] | Dataset


@dataclass(frozen=True)
class ProbeSharding:
    """How the ranks of a distributed run share the probe forward pass (see :func:`measure`).

    Attributes
    ----------
    rank, world_size : int
        This process's global rank, and the number of ranks.
    all_gather : callable ``(tensor of shape (m, C)) -> tensor of shape (world_size, m, C)``
        The strategy's collective, e.g. Lightning's ``trainer.strategy.all_gather``.
    broadcast : callable ``(object, src=0) -> object``
        Rank 0's object on every rank, e.g. ``trainer.strategy.broadcast``.
    """

    rank: int
    world_size: int
    all_gather: Callable[[torch.Tensor], torch.Tensor]
    broadcast: Callable[..., Any]

    @contextmanager
    def rank_zero_buffers(self, model: nn.Module) -> Iterator[None]:
        """Rank 0's buffers in ``model`` for the duration, then this rank's own back.

        The ranks' buffers differ between synchronisations (each updates its batch-norm
        statistics on its own batches): without this, every shard would go through a slightly
        different model. Each rank's training state is left exactly as it was.
        """
        buffers = dict(model.named_buffers())
        reference = self.broadcast({n: b.detach().cpu() for n, b in buffers.items()}, src=0)
        own = {n: b.detach().clone() for n, b in buffers.items()}
        try:
            with torch.no_grad():
                for name, buffer in buffers.items():
                    buffer.copy_(reference[name])
            yield
        finally:
            with torch.no_grad():
                for name, buffer in buffers.items():
                    buffer.copy_(own[name])

    def gather(self, shard: torch.Tensor, n: int) -> torch.Tensor:
        """Every rank's ``shard`` of a cloud, in rank order, cut to its ``n`` rows (the probe's
        inputs times the block's points per input)."""
        gathered = self.all_gather(shard.contiguous())
        return gathered.reshape(-1, *shard.shape[1:])[:n]


def as_probe(
    probe: ProbeLike,
    samples_per_class: int = 300,
    seed: int = 0,
    unpack: Callable[[Any], tuple[Any, Any]] | None = None,
    per_class: bool = True,
    pad_value: int | float = 0,
    max_inputs: int | None = None,
) -> ProbeSet:
    """A :class:`ProbeSet` from what a user may pass: itself, ``(inputs, labels)`` tensors, or a
    ``Dataset`` to draw ``samples_per_class`` items per class from (with the private ``seed``;
    ``per_class=False`` accepts targets that are not class ids, or none; ``pad_value`` pads
    token sequences of mapping items)."""
    if isinstance(probe, ProbeSet):
        return probe
    if isinstance(probe, tuple) and len(probe) == 2:
        return ProbeSet.from_tensors(*probe)
    if isinstance(probe, Dataset):
        return ProbeSet.from_dataset(
            probe,
            samples_per_class,
            seed,
            unpack or default_unpack,
            per_class,
            pad_value,
            max_inputs,
        )
    raise ValueError(
        "probe must be a ProbeSet, an (inputs, labels) tuple of tensors or a Dataset, "
        f"got {type(probe).__name__}"
    )


def cloud_bytes_per_input(
    model: nn.Module,
    probe: ProbeSet,
    *,
    blocks: BlocksSpec = "auto",
    reduction: str = "gap",
    channel_dim: int | None = None,
    batch_size: int = 256,
    forward: Callable[[nn.Module, Any], Any] | None = None,
    seed: int = 0,
    per_class: bool = True,
) -> dict[str, float]:
    """Bytes per probe input of every block's reduced cloud, from the probe's first batch alone
    (the model's state is left as it was): what :func:`check_cloud_bytes` projects, with the
    reducer :func:`measure` would use."""
    reducer = _reducer(probe, reduction, channel_dim, seed, per_class)
    first = next(probe.batches(batch_size))
    sizes: dict[str, float] = {}
    with preserved_state(model):
        collect_clouds(
            model,
            [first],
            resolve_blocks(model, blocks),
            reducer,
            forward,
            reducer.see_batch,
            sizes.update,
        )
    return sizes


def _reducer(
    probe: ProbeSet,
    reduction: str,
    channel_dim: int | None,
    seed: int,
    per_class: bool,
    first_input: int = 0,
) -> Reducer:
    """The reducer of a pass over ``probe``: the cap on points per input of the spatial
    reductions is set by the largest cloud measured (the largest class, or the whole probe)."""
    per_cloud = len(probe)
    if per_class:
        per_cloud = int(torch.unique(probe.labels, return_counts=True)[1].max())
    return Reducer(
        reduction, channel_dim, inputs_per_cloud=per_cloud, seed=seed, first_input=first_input
    )


def check_probing_options(
    reduction: str = "gap", seed: int = 0, batch_size: int = 256, channel_dim: int | None = None
) -> None:
    """The checks of :func:`measure`'s probing options, for constructors that store them."""
    check(reduction in REDUCTIONS, f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    check(
        isinstance(seed, int) and not isinstance(seed, bool), f"seed must be an int, got {seed!r}"
    )
    check(is_positive_int(batch_size), f"batch_size must be a positive int, got {batch_size!r}")
    check(channel_dim in (None, 1, -1), f"channel_dim must be None, 1 or -1, got {channel_dim!r}")


def measure(
    model: nn.Module,
    probe: ProbeLike,
    *,
    blocks: BlocksSpec = "auto",
    reduction: str = "gap",
    seed: int = 0,
    forward: Callable[[nn.Module, Any], Any] | None = None,
    samples_per_class: int = 300,
    unpack: Callable[[Any], tuple[Any, Any]] | None = None,
    batch_size: int = 256,
    channel_dim: int | None = None,
    config: SummaryConfig | None = None,
    epoch: int | None = None,
    step: int | None = None,
    previous: TopologyRecord | None = None,
    sharding: ProbeSharding | None = None,
    pad_value: int | float = 0,
    max_cloud_bytes: int | None = MAX_CLOUD_BYTES,
    max_probe_inputs: int | None = None,
    **summary_options: Any,
) -> TopologyRecord | None:
    """Measure the topology of every block of ``model`` on a probe set.

    The probe inputs go through the model in eval mode under ``no_grad``, in batches on the
    model's device; each block's output is reduced to one point per input, or several (the
    spatial reductions); then per block (per class, averaged) E lifespans, PHdim and the SW
    matrix are computed (:func:`summarize`). The model's per-module modes, its gradient state
    and the torch/NumPy/Python random streams are left as they were, so measuring inside a
    training run changes nothing in it.

    Parameters
    ----------
    model : nn.Module
        Any module (a ``LightningModule`` too); it stays on its device.
    probe : ProbeSet, (inputs, labels) tensors, or Dataset
        A ``Dataset`` is sampled: ``samples_per_class`` items per class, drawn with ``seed``
        (``unpack`` splits unusual items into ``(input, label)``).
    blocks : "auto", list of str, or callable
        As :class:`~topo_monitor.TopologyMonitor`; ``"auto"`` is
        :func:`~topo_monitor.probing.candidate_blocks`. The model output is always the last
        block. A named block that the forward pass never calls is not measured, with a warning.
    reduction : str
        One of :data:`~topo_monitor.probing.REDUCTIONS`: ``"gap"``, ``"top_l2"``, ``"flatten"``,
        ``"spatial"``, ``"spatial_random"``, ``"spatial_top1"``, ``"spatial_top5"`` (see
        :class:`~topo_monitor.probing.reduction.Reducer`). The spatial ones give several
        points per input (its spatial activation vectors, capped at
        :data:`~topo_monitor.probing.reduction.MAX_POINTS` per class cloud), each labelled with
        its input's class: per-class clouds are formed from all points of the class's inputs.
        The model output keeps one point per input (the margin is unchanged).
    seed : int
        Seeds the private generators of the PHdim and H1 subsamples (and of a probe draw, and of
        the random positions of the spatial reductions: the same every epoch).
    forward : callable ``(model, inputs) -> output``, optional
        Default ``model(**inputs)`` when the inputs are a mapping (``{"input_ids",
        "attention_mask"}``: HuggingFace's convention), else ``model(inputs)``. With an
        ``attention_mask`` among the inputs, sequence outputs ``(B, T, C)`` are reduced over
        the positions it marks 1 (pads never enter a cloud).
    batch_size : int
        Probe inputs per forward pass.
    max_probe_inputs : int, optional
        With a ``Dataset``: when its classes would give more probe inputs, classes are drawn at
        random (with ``seed``) until the next would exceed it (one warning says which).
    max_cloud_bytes : int or None
        Budget for the reduced clouds (default :data:`MAX_CLOUD_BYTES`, 2 GiB): projected from
        the first probe batch, a pass that would exceed it stops there with a ValueError naming
        the block and the options that fit. None: no budget.
    pad_value : int or float
        Pads the token sequences of mapping items drawn from a ``Dataset`` to one length (the
        tokenizer's pad id; the attention mask is 0 there), see
        :func:`~topo_monitor.probing.probe.collate_inputs`.
    channel_dim : None, 1 or -1
        Channel dimension of 3-D outputs (see :class:`~topo_monitor.probing.reduction.Reducer`).
    config : SummaryConfig, optional
        What to compute; or give its fields as keyword arguments (``metrics=("e0",)``,
        ``homology_dims=(0, 1)``, ...), not both.
    epoch, step : int, optional
        Stored in the record (a callback's epoch; a checkpoint's, when known).
    previous : TopologyRecord, optional
        The record of the same model and probe set at the previous measurement: gives each
        block's ``H0_velocity`` (the SW distance its scale-free H0 diagrams moved since).
    sharding : ProbeSharding, optional
        Split the forward pass over the ranks of a distributed run: every rank must call
        ``measure`` with the same probe and options (the gathers are collectives, and a
        sharded model's forward is one); each forwards its :meth:`ProbeSet.shard`, the reduced
        outputs are gathered, and rank 0 computes the topology. The record equals the
        single-process one for the same probe (up to floating-point differences between
        batch compositions).

    Returns
    -------
    TopologyRecord or None
        None on every rank but 0 when ``sharding`` is given.
        With the test-free baselines ``extras["margin"]`` (mean logit margin of the output on
        the probe labels) and ``extras["param_norm"]``, and ``timings`` per stage in seconds.
        Values that cannot be computed are NaN, with one warning per block naming the cause.

    Examples
    --------
    >>> probe = ProbeSet.from_dataset(train_set, samples_per_class=100)
    >>> records = [measure(load(path), probe, epoch=e) for e, path in checkpoints]
    """
    config = summary_config(config, summary_options)
    check_probing_options(reduction, seed, batch_size, channel_dim)
    probe = as_probe(
        probe, samples_per_class, seed, unpack, config.per_class, pad_value, max_probe_inputs
    )
    hooked = resolve_blocks(model, blocks)
    timings = {"reduction": 0.0}
    part = probe if sharding is None else probe.shard(sharding.rank, sharding.world_size)
    reducer = _reducer(
        probe,
        reduction,
        channel_dim,
        seed,
        config.per_class,
        first_input=0 if sharding is None else sharding.rank * len(part),
    )

    def reduce(name: str, tensor: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = reducer(name, tensor)
        timings["reduction"] += time.perf_counter() - start
        return out

    start = time.perf_counter()
    same_model = nullcontext() if sharding is None else sharding.rank_zero_buffers(model)
    with preserved_state(model), same_model:
        clouds, skipped = collect_clouds(
            model,
            part.batches(batch_size),
            hooked,
            reduce,
            forward,
            reducer.see_batch,
            lambda per_input: check_cloud_bytes(per_input, len(probe), max_cloud_bytes),
        )
    timings["forward"] = time.perf_counter() - start - timings["reduction"]
    if sharding is not None:
        start = time.perf_counter()
        clouds = {
            name: sharding.gather(cloud, len(probe) * reducer.points_per_input[name])
            for name, cloud in clouds.items()
        }
        timings["gather"] = time.perf_counter() - start
    norm = param_norm(model)  # before rank 0 goes on alone: a collective for sharded parameters
    if sharding is not None and sharding.rank != 0:
        return None
    where = "" if epoch is None else f"epoch {epoch}, "
    for name, reason in skipped.items():
        warnings.warn(
            f"topo_monitor: {where}block {name!r} is not measured: {reason}", stacklevel=2
        )
    # A hooked module that ran left a cloud or a reason. "auto" may pick modules that only run in
    # training mode (auxiliary heads); a block the user named must not vanish without a word.
    never_called = [name for name in hooked if name not in clouds and name not in skipped]
    if never_called and not isinstance(blocks, str):
        warnings.warn(
            f"topo_monitor: {where}block(s) {never_called} were never called during the probe "
            "forward pass and are not measured: the model's forward (in eval mode) does not use "
            "them; name modules it calls",
            stacklevel=2,
        )
    record = summarize(
        clouds,
        probe.labels,
        config,
        generator=torch.Generator().manual_seed(seed),
        previous=previous,
        inputs=reducer.inputs(len(probe)),
    )
    record.epoch, record.step = epoch, step
    record.timings = {**timings, **record.timings}
    record.extras = {
        "margin": mean_margin(clouds[OUTPUT], probe.labels) if probe.classified else math.nan,
        "param_norm": norm,
    }
    warn_problems(record.problems, where)
    return record
