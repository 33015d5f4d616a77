"""Test-free baselines of a model, measured beside the topology on the same probe set.

A topological signal earns its place only if it tells more than these cheap quantities do, so
every record carries the margin and the parameter norm (``TopologyRecord.extras``). They measure
a model, not a point cloud: the geometry baselines of a cloud are in
:mod:`topo_monitor.tda.geometry`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["mean_margin", "param_distance", "param_norm"]


def mean_margin(logits: Any, labels: Any) -> float:
    """Mean over inputs of (logit of the true class − largest other logit); NaN if the outputs
    are not class scores (fewer columns than classes). Positive when most inputs are right."""
    scores = np.asarray(logits.cpu() if hasattr(logits, "cpu") else logits, dtype=float)
    y = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels, dtype=int)
    if scores.ndim != 2 or scores.shape[1] < 2 or y.max() >= scores.shape[1]:
        return math.nan
    true = scores[np.arange(len(y)), y]
    others = scores.copy()
    others[np.arange(len(y)), y] = -np.inf
    return float(np.mean(true - others.max(axis=1)))


def param_norm(model: nn.Module) -> float:
    """Euclidean norm of all the model's parameters together, in float64.

    A parameter sharded over ranks (a ``DTensor``, as FSDP2 makes them) is gathered whole
    first: a collective, so under a sharded strategy every rank must call this, in step.
    """
    squares = []
    for p in model.parameters():
        whole = p.full_tensor() if hasattr(p, "full_tensor") else p
        squares.append(whole.detach().double().square().sum().cpu())
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


def param_distance(model: nn.Module, initial: Mapping[str, torch.Tensor]) -> float:
    """Euclidean distance of the model's parameters from ``initial`` (e.g. a copy of
    ``dict(model.named_parameters())`` taken before training), in float64.

    Raises
    ------
    ValueError
        If ``initial`` lacks a parameter of the model or holds one of another shape.
    """
    squares = []
    for name, p in model.named_parameters():
        if name not in initial or initial[name].shape != p.shape:
            raise ValueError(f"initial holds no parameter {name!r} of shape {tuple(p.shape)}")
        start = initial[name].detach().to(device=p.device, dtype=torch.float64)
        squares.append((p.detach().double() - start).square().sum().cpu())
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0
