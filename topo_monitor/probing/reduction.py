"""The reduction of a block's output to the points of its cloud: one vector per input, or several.

The spatial reductions follow Purvine et al. (2023, "Experimental observations of the topology of
convolutional neural network activations"): the points are *spatial activation vectors*, the
``C``-dim vector at each position ``(h, w)`` of a convolutional map (each token of a sequence),
all of them or a few per input. Every point stands for its input: it carries the input's label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from topo_monitor._validation import check, is_positive_int
from topo_monitor.probing.blocks import OUTPUT
from topo_monitor.probing.probe import MASK_KEY

__all__ = [
    "MAX_POINTS",
    "RANDOM_POSITIONS",
    "REDUCTIONS",
    "Reducer",
]

RANDOM_POSITIONS = 5
"""Positions drawn per input by ``"spatial_random"``: as many as ``"spatial_top5"`` keeps, so that
it is the same-sized random baseline of the largest-norm cloud (E0 grows with the number of
points: clouds of different sizes do not compare). The paper's random sampling draws 1."""

_POSITIONS: dict[str, int | None] = {
    "gap": 1,
    "top_l2": 1,
    "flatten": 1,
    "spatial": None,
    "spatial_random": RANDOM_POSITIONS,
    "spatial_top1": 1,
    "spatial_top5": 5,
}
"""Points per input of every reduction (None: one per position), before the cap."""

REDUCTIONS = tuple(_POSITIONS)
"""Every reduction: ``gap``, ``top_l2``, ``flatten`` and the spatial ones (see :class:`Reducer`)."""

MAX_POINTS = 1500
"""Cap on the points of a class cloud under a reduction with several points per input: ``k``
points per input become ``max(1, min(k, MAX_POINTS // inputs))``, ``inputs`` those of the largest
class, so a cloud holds at most ``max(MAX_POINTS, inputs)`` points. H0 costs O(n²), PHdim
more (one CPU thread, 64-dim points: 0.13 s per cloud of 1000 points, 0.4 s at 2000, 1.6 s at
4000); 1500 is what ``"spatial_top5"`` and ``"spatial_random"`` give on the default probe of 300
inputs per class, uncapped."""

_KEY_ROWS = 256
"""Inputs per draw of random position keys: an input's keys depend on its index, not the batch."""


def _position_vectors(x: torch.Tensor, channel_dim: int | None) -> torch.Tensor:
    """``(B, P, C)``: the channel vector at each of the P positions of each input (P = 1 for a
    dense ``(B, C)`` output); positions in row-major order of the spatial dimensions."""
    if x.dim() == 2:
        return x[:, None, :]
    if channel_dim is None:
        channel_dim = 1 if x.dim() >= 4 else -1
    return x.movedim(channel_dim, -1).reshape(x.shape[0], -1, x.shape[channel_dim])


class Reducer:
    """Reduces a probe pass's block outputs, batch after batch, to the points of their clouds.

    One per pass: it counts the inputs each block has seen, to give input ``i`` its positions.

    Every block's cloud holds ``k`` consecutive rows per input, in probe order (row ``i * k + j``
    is point ``j`` of input ``i``), with ``k`` fixed per block: 1 for ``gap``, ``top_l2``,
    ``spatial_top1`` and ``flatten``, and for dense ``(B, C)`` outputs (Linear layers) under any
    reduction; for the others, as many positions as the reduction keeps, capped so that a cloud
    of ``inputs_per_cloud`` inputs has at most ``max(max_points, inputs_per_cloud)`` points (every
    input keeps at least one). The model output (:data:`OUTPUT`) always has one point per input:
    a reduction that keeps several positions takes their mean there (``gap``), so the logit
    margin is that of the scores.

    Parameters
    ----------
    reduction : str, one of :data:`REDUCTIONS`
        ``gap``: the mean over positions. ``top_l2``: the position vector with the largest l2
        norm (Gabrielsson & Carlsson). ``flatten``: the whole output. ``spatial``: every
        position vector, in row-major order of the positions (the tokens of a sequence).
        ``spatial_random``: :data:`RANDOM_POSITIONS` positions per input, drawn with a private
        generator seeded with ``seed``: input ``i`` gets the same positions at every call (every
        epoch), whatever the batches, in every block with the same number of positions.
        ``spatial_top1``, ``spatial_top5``: the 1 or 5 positions with the largest l2 norm, by
        decreasing norm (the paper's top-l2 sampling; a label-free stand-in for its foreground
        sampling, which needs segmentation masks); ``spatial_top1`` is ``top_l2``. ``spatial``
        over the cap keeps random positions as ``spatial_random`` draws them, in position
        order.
    channel_dim : int, optional
        Where the channels are. Default: 1 for outputs of 4 or more dimensions (NCHW), -1 for
        3-dimensional outputs (batch-first sequences, as transformers emit). Give 1 for
        ``Conv1d`` outputs ``(B, C, L)``.
    inputs_per_cloud : int, optional
        Inputs of the largest cloud the points will be measured in (the largest class); None:
        no cap.
    seed : int
        Seeds the random positions.
    max_points : int
        The cap (see above).
    first_input : int
        Probe index of the first input this pass sees (a rank's shard starts further on).

    Attributes
    ----------
    points_per_input : dict[str, int]
        ``k`` of every block reduced so far.
    """

    def __init__(
        self,
        reduction: str = "gap",
        channel_dim: int | None = None,
        *,
        inputs_per_cloud: int | None = None,
        seed: int = 0,
        max_points: int = MAX_POINTS,
        first_input: int = 0,
    ) -> None:
        check(reduction in REDUCTIONS, f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        check(
            inputs_per_cloud is None or is_positive_int(inputs_per_cloud),
            f"inputs_per_cloud must be None or a positive int, got {inputs_per_cloud!r}",
        )
        check(is_positive_int(max_points), f"max_points must be a positive int, got {max_points!r}")
        self.reduction = reduction
        self.channel_dim = channel_dim
        self.seed = seed
        self.first_input = first_input
        self._cap = None if inputs_per_cloud is None else max(1, max_points // inputs_per_cloud)
        self.points_per_input: dict[str, int] = {}
        self._next_input: dict[str, int] = {}
        self._drawn: dict[int, tuple[torch.Generator, torch.Tensor]] = {}
        self._mask: torch.Tensor | None = None

    def see_batch(self, batch: Any) -> None:
        """Take the valid positions of the batch about to go through the model: its
        ``attention_mask`` when it is a mapping of model inputs (HuggingFace's convention)."""
        mask = batch.get(MASK_KEY) if isinstance(batch, Mapping) else None
        self._mask = None if mask is None else torch.as_tensor(mask).bool()

    def __call__(self, name: str, output: torch.Tensor) -> torch.Tensor:
        """The points of one batch of block ``name``'s outputs.

        Parameters
        ----------
        output : torch.Tensor, shape (B, ...)
            ``(B, C)`` dense, ``(B, C, H, W)`` (or any ``(B, C, *spatial)``) convolutional, or
            ``(B, T, C)`` sequence output. A nested tensor of ``B`` sequences of different
            lengths (what ``nn.TransformerEncoder`` layers emit given ``src_key_padding_mask``)
            is reduced sequence by sequence, over its own, valid positions; so is a ``(B, T, C)``
            output of a batch whose ``attention_mask`` (see :meth:`see_batch`) marks pads.

        Returns
        -------
        torch.Tensor, shape (B * k, C), or (B, prod(...)) for ``flatten``
            A new float32 tensor (never a view of ``output``), on ``output``'s device.
        """
        if output.is_nested or self._masks_positions_of(output):
            # sequences of different lengths: a nested tensor (a TransformerEncoder given a
            # padding mask), or a padded batch whose attention mask marks the pads
            check(
                self.reduction != "flatten",
                "its output holds sequences of different lengths (a nested tensor, or pads "
                'marked by the attention mask): reduction="flatten" needs one length; use '
                '"gap" or "top_l2"',
            )
            sequences = output.unbind() if output.is_nested else self._valid_positions(output)
            return torch.cat([self(name, t.unsqueeze(0)) for t in sequences])
        x = output.detach()
        check(x.dim() >= 2, f"expected an output of shape (batch, ...), got shape {tuple(x.shape)}")
        x = x.float()
        B = x.shape[0]
        start = self._next_input.get(name, self.first_input)
        self._next_input[name] = start + B
        reduction, wanted = self.reduction, _POSITIONS[self.reduction]
        if name == OUTPUT and wanted != 1:
            reduction, wanted = "gap", 1
        if reduction == "flatten":
            self._keep(name, 1)
            return x.reshape(B, -1).clone()
        points = _position_vectors(x, self.channel_dim)
        P, C = points.shape[1:]
        if reduction == "gap":
            self._keep(name, 1)
            return points.mean(dim=1)
        k = min(P if wanted is None else wanted, P, self._cap or P)
        self._keep(name, k)
        if reduction in ("top_l2", "spatial_top1", "spatial_top5"):
            chosen = torch.linalg.vector_norm(points, dim=2).topk(k, dim=1).indices
        elif k == P:
            return points.reshape(B * P, C).clone()
        else:
            chosen = self._random_positions(P, k, start, start + B).to(x.device)
        return torch.take_along_dim(points, chosen[..., None], dim=1).reshape(B * k, C)

    def _masks_positions_of(self, output: torch.Tensor) -> bool:
        """Whether the batch's mask marks pads among the positions of this ``(B, T, C)`` output
        (a sequence output whose batch and length are the mask's)."""
        mask = self._mask
        return (
            mask is not None
            and output.dim() == 3
            and self.channel_dim in (None, -1, 2)
            and tuple(output.shape[:2]) == tuple(mask.shape)
            and not bool(mask.all())
        )

    def _valid_positions(self, output: torch.Tensor) -> list[torch.Tensor]:
        mask = self._mask.to(output.device)  # type: ignore[union-attr]
        return [sequence[valid] for sequence, valid in zip(output, mask, strict=True)]

    def _keep(self, name: str, k: int) -> None:
        """Record block ``name``'s points per input; its clouds' rows must not change stride."""
        before = self.points_per_input.setdefault(name, k)
        check(
            before == k,
            f"block {name!r} gives {before} points per input in one batch and {k} in another "
            f"(outputs with different numbers of positions): reduction {self.reduction!r} "
            'needs as many for every input; use "gap" or "top_l2"',
        )

    def _random_positions(self, P: int, k: int, start: int, stop: int) -> torch.Tensor:
        """``(stop - start, k)`` positions of inputs ``start, ..., stop - 1`` among ``P``,
        ascending: the ``k`` smallest of each input's random keys, drawn in rows of
        :data:`_KEY_ROWS` inputs from a generator seeded with ``seed``."""
        generator, drawn = self._drawn.get(
            P, (torch.Generator().manual_seed(self.seed), torch.empty(0, k, dtype=torch.long))
        )
        while len(drawn) < stop:
            keys = torch.rand(_KEY_ROWS, P, generator=generator)
            chosen = keys.topk(k, dim=1, largest=False).indices.sort(dim=1).values
            drawn = torch.cat([drawn, chosen])
        self._drawn[P] = generator, drawn
        return drawn[start:stop]

    def inputs(self, n: int) -> dict[str, torch.Tensor]:
        """Per block with several points per input, the probe input of each row of its cloud
        over ``n`` inputs: ``0, ..., 0, 1, ..., n - 1`` (k times each)."""
        return {
            name: torch.arange(n).repeat_interleave(k)
            for name, k in self.points_per_input.items()
            if k > 1
        }
