"""Test-free baselines measured beside the topology, on the same probe set and model.

A topological signal earns its place only if it tells more than these cheap quantities do, so
every record carries them (``TopologyRecord.extras``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["mean_margin", "param_norm"]


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
    """Euclidean norm of all the model's parameters together, in float64."""
    squares = [p.detach().double().square().sum().cpu() for p in model.parameters()]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0
