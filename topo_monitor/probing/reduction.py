"""The reduction of a block's output to one vector per input: the point of that input's cloud."""

from __future__ import annotations

import torch

__all__ = ["REDUCTIONS", "reduce_output"]

REDUCTIONS = ("gap", "top_l2", "flatten")


def reduce_output(
    output: torch.Tensor, reduction: str = "gap", channel_dim: int | None = None
) -> torch.Tensor:
    """Reduce a block's output to one vector per input.

    Parameters
    ----------
    output : torch.Tensor, shape (B, ...)
        ``(B, C)`` dense, ``(B, C, H, W)`` (or any ``(B, C, *spatial)``) convolutional, or
        ``(B, T, C)`` sequence output. A nested tensor of ``B`` sequences of different
        lengths (what ``nn.TransformerEncoder`` layers emit given ``src_key_padding_mask``) is
        reduced over each sequence's own, valid positions.
    reduction : {"gap", "top_l2", "flatten"}
        ``gap``: mean over all spatial/sequence positions. ``top_l2``: the position vector with
        the largest l2 norm (Gabrielsson & Carlsson). ``flatten``: the whole output per input.
    channel_dim : int, optional
        Where the channels are. Default: 1 for outputs of 4 or more dimensions (NCHW), -1 for
        3-dimensional outputs (batch-first sequences, as transformers emit). Give 1 for
        ``Conv1d`` outputs ``(B, C, L)``.

    Returns
    -------
    torch.Tensor, shape (B, C) or (B, prod(...)) for ``flatten``
        A new float32 tensor (never a view of ``output``), on ``output``'s device.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if output.is_nested:  # padded sequences (a TransformerEncoder given a padding mask)
        if reduction == "flatten":
            raise ValueError(
                "its output holds sequences of different lengths (a nested tensor): "
                'reduction="flatten" needs one length; use "gap" or "top_l2"'
            )
        return torch.stack(
            [reduce_output(t.unsqueeze(0), reduction, channel_dim)[0] for t in output.unbind()]
        )
    x = output.detach()
    if x.dim() < 2:
        raise ValueError(f"expected an output of shape (batch, ...), got shape {tuple(x.shape)}")
    x = x.float()
    if reduction == "flatten" or x.dim() == 2:
        return x.reshape(x.shape[0], -1).clone()
    if channel_dim is None:
        channel_dim = 1 if x.dim() >= 4 else -1
    positions = x.movedim(channel_dim, -1).reshape(x.shape[0], -1, x.shape[channel_dim])
    if reduction == "gap":
        return positions.mean(dim=1)
    best = torch.linalg.vector_norm(positions, dim=2).argmax(dim=1)
    return positions[torch.arange(x.shape[0], device=x.device), best].clone()
