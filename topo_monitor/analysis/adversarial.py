"""Topology of adversarial-example manifolds (Magai & Ayzenberg 2022, §4.3).

Adversarial examples X' are made with torchattacks at several budgets ε; as attacks succeed more,
the paper finds that E^0_1 and E^1_1 of X' inside every block fall, and that PHdim of X' in input
space rises with the noise. :func:`adversarial_topology` measures this for any classifier.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from topo_monitor.probing.blocks import resolve_blocks
from topo_monitor.probing.hooks import model_device, preserved_state
from topo_monitor.probing.measurement import BlocksSpec, measure
from topo_monitor.probing.record import TopologyRecord
from topo_monitor.probing.summary import SummaryConfig

if TYPE_CHECKING:
    import torchattacks

__all__ = [
    "ATTACKS",
    "INPUT",
    "AdversarialTable",
    "adversarial_config",
    "adversarial_topology",
    "check_attacks",
    "macro_f1",
    "require_torchattacks",
]

ATTACKS = ("FGSM", "MIFGSM", "PGD")
"""torchattacks attacks known by name; any other ``torchattacks.Attack`` class or instance may be
passed. torchattacks (the ``adversarial`` extra) is imported when the analysis first runs, not
with this package."""

INPUT = "input"
"""Name of the input-space cloud (relative depth 0) in the table."""

DEFAULT_EPS = (0.0, 0.03, 0.1, 0.3)


def require_torchattacks() -> Any:
    """The torchattacks module, or an ImportError that says how to get it.

    torchattacks is the ``adversarial`` extra, not a dependency: its last release pins an old,
    vulnerable ``requests`` that every user would otherwise get.
    """
    try:
        return importlib.import_module("torchattacks")
    except ImportError as error:
        raise ImportError(
            "the adversarial API makes its attacks with torchattacks, which is not installed: "
            "pip install 'topo-monitor[adversarial]' (torchattacks pins requests~=2.25.1; "
            "'pip install --no-deps torchattacks' keeps your requests, as torchattacks imports "
            "only torch, NumPy and SciPy)"
        ) from error


def adversarial_config(
    homology_dims: Sequence[int] = (0, 1), h1_max_points: int = 100, per_class: bool = True
) -> SummaryConfig:
    """What the adversarial analysis computes: E lifespans and PHdim (no SW matrix), checked."""
    return SummaryConfig(
        metrics=("e0", "phdim"),
        homology_dims=tuple(homology_dims),
        per_class=per_class,
        h1_max_points=h1_max_points,
    )


class _WithInput(nn.Module):
    """The model behind a flattening layer named ``input``: hooked like any block, it puts the
    input-space cloud first in the record, at depth 0."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.input = nn.Flatten()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.input(x)
        return self.model(x)


class _Normalized(nn.Module):
    """The user's model behind a normalization layer, so attacks work on [0, 1] inputs."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


@dataclass
class AdversarialTable:
    """A tidy table: one row per (attack, ε, block), including ``block="input"`` (depth 0).

    Columns: ``attack, eps, success_rate, accuracy, macro_f1, block, depth`` and the topology
    metrics of :func:`topo_monitor.probing.summarize` (``E0_1``, ``E0_mean_lifespan``,
    ``PHdim``, ``E1_1``, ``E1_mean_lifespan``, their scale-free forms...), class-averaged.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []

    def select(self, **where: Any) -> list[dict[str, Any]]:
        """Rows whose columns equal the given values: ``select(attack="FGSM", block="input")``."""
        return [r for r in self.rows if all(r.get(k) == v for k, v in where.items())]

    def column(self, name: str, **where: Any) -> np.ndarray:
        return np.array([r[name] for r in self.select(**where)], dtype=float)

    def to_csv(self, path: str) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)


def macro_f1(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean over the true classes of the per-class F1 score."""
    scores = []
    for c in np.unique(labels):
        tp = np.sum((predicted == c) & (labels == c))
        fp = np.sum((predicted == c) & (labels != c))
        fn = np.sum((predicted != c) & (labels == c))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0)
    return float(np.mean(scores))


def _make_attack(
    attack: str | type | torchattacks.attack.Attack,
    model: nn.Module,
    eps: float,
    kwargs: dict[str, Any],
) -> tuple[str, torchattacks.attack.Attack]:
    name = _attack_name(attack)  # a known name, an attack class or an instance from here on
    if isinstance(attack, str):
        attack = getattr(require_torchattacks(), attack)
    if isinstance(attack, type):
        parameters = inspect.signature(attack.__init__).parameters
        if "alpha" in parameters and "alpha" not in kwargs:
            # torchattacks' fixed step (2/255) cannot reach large budgets in 10 steps: scale it.
            steps = kwargs.get(
                "steps", parameters["steps"].default if "steps" in parameters else 10
            )
            kwargs = {**kwargs, "alpha": 2.5 * eps / steps}
        return name, attack(model, eps=eps, **kwargs)
    attack.set_model(model)
    if hasattr(attack, "eps"):
        attack.eps = eps
    return name, attack


def adversarial_topology(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    attacks: Sequence[str | type | torchattacks.attack.Attack] = ("FGSM", "MIFGSM", "PGD"),
    eps: Sequence[float] = DEFAULT_EPS,
    blocks: BlocksSpec = "auto",
    reduction: str = "gap",
    homology_dims: Sequence[int] = (0, 1),
    h1_max_points: int = 100,
    per_class: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    attack_kwargs: dict[str, Any] | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> AdversarialTable:
    """Topology of adversarial examples in input space and inside every block of a classifier.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits. Its train/eval mode (per submodule), its weights and the
        global random streams are left as they were; everything runs on its device.
    inputs : torch.Tensor, shape (n, ...)
        Images in [0, 1] (torchattacks' convention). If your model takes normalized inputs
        ``(x - mean) / std``, pass those normalized inputs together with ``mean`` and ``std``
        (per channel): they are mapped back to [0, 1] for the attacks, and the model always
        receives normalized inputs.
    labels : torch.Tensor, shape (n,)
    attacks : sequence
        Names in :data:`ATTACKS`, torchattacks attack classes, or instances (their ``eps`` is set
        to each budget in turn).
    eps : sequence of float
        L∞ budgets in [0, 1] units; ε = 0 is the clean data (no attack is run).
    homology_dims : (0,) or (0, 1)
        H1 is computed on at most ``h1_max_points`` points per class.
    attack_kwargs : dict, optional
        Extra arguments for attacks built from a name or class (e.g. ``{"steps": 5}``). Iterative
        attacks get the step size ``alpha = 2.5 * eps / steps`` unless ``alpha`` is given, so that
        every budget can be reached.

    Returns
    -------
    AdversarialTable
        Per attack and ε: success rate (fraction of the inputs classified correctly before the
        attack that are misclassified after), accuracy and macro F1 on X'; per block (and
        ``"input"``): the class-averaged topology of X'.
    """
    require_torchattacks()
    check_attacks(attacks)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2:
        raise ValueError("inputs must be a tensor of shape (n, ...)")
    labels = torch.as_tensor(labels).reshape(-1).long()
    if len(labels) != len(inputs):
        raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
    eps = [float(e) for e in eps]
    if not eps or any(not 0 <= e <= 1 for e in eps):
        raise ValueError(f"eps must be budgets in [0, 1] (torchattacks' units), got {eps}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std of the input normalization, or neither")
    device = model_device(model)
    inputs = inputs.detach().to(device)
    attacked: nn.Module = model
    if mean is not None:
        shape = (1, -1) + (1,) * (inputs.dim() - 2)
        m = torch.as_tensor(mean, dtype=inputs.dtype, device=device).reshape(shape)
        s = torch.as_tensor(std, dtype=inputs.dtype, device=device).reshape(shape)
        inputs = inputs * s + m
        attacked = _Normalized(model, m, s)
    low, high = float(inputs.min()), float(inputs.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(
            f"inputs range over [{low:.3g}, {high:.3g}], outside [0, 1]: torchattacks works on "
            "[0, 1] images; if your inputs are normalized, pass mean= and std="
        )
    inputs = inputs.clamp(0, 1)
    config = adversarial_config(homology_dims, h1_max_points, per_class)
    # The measured model: input space first, then the user's blocks (under their own names).
    prefix = "model." + ("model." if attacked is not model else "")
    measured = _WithInput(attacked)
    hooked = [INPUT] + [prefix + name for name in resolve_blocks(model, blocks)]
    kwargs = dict(attack_kwargs or {})
    truth = labels.numpy()
    table = AdversarialTable(timings={"attack": 0.0, "topology": 0.0})

    def batches(x: torch.Tensor) -> Iterator[torch.Tensor]:
        return (x[i : i + batch_size] for i in range(0, len(x), batch_size))

    def topology_of(x: torch.Tensor) -> TopologyRecord:
        record = measure(
            measured,
            (x, labels),
            blocks=hooked,
            reduction=reduction,
            seed=seed,
            batch_size=batch_size,
            config=config,
        )
        record.blocks = [name.removeprefix(prefix) for name in record.blocks]
        return record

    with preserved_state(model, grad=True):
        torch.manual_seed(seed)  # attacks with random starts (PGD) draw from this forked stream
        correct = _predict(attacked, batches(inputs)) == truth
        clean: TopologyRecord | None = None
        for attack in attacks:
            for e in eps:
                start = time.perf_counter()
                if e == 0:
                    name, adversarial = _attack_name(attack), inputs
                else:
                    name, atk = _make_attack(attack, attacked, e, kwargs)
                    pairs = zip(batches(inputs), batches(labels.to(device)), strict=True)
                    adversarial = torch.cat([atk(x, y) for x, y in pairs])
                table.timings["attack"] += time.perf_counter() - start
                start = time.perf_counter()
                predicted = _predict(attacked, batches(adversarial))
                if e == 0:
                    clean = summary = clean or topology_of(inputs)
                else:
                    summary = topology_of(adversarial)
                table.timings["topology"] += time.perf_counter() - start
                common = {
                    "attack": name,
                    "eps": e,
                    "success_rate": float((correct & (predicted != truth)).sum())
                    / max(int(correct.sum()), 1),
                    "accuracy": float(np.mean(predicted == truth)),
                    "macro_f1": macro_f1(predicted, truth),
                }
                last = len(summary.blocks) - 1
                for b, block in enumerate(summary.blocks):
                    row = {**common, "block": block, "depth": b / last}
                    row.update({metric: v[b] for metric, v in summary.values.items()})
                    table.rows.append(row)
    return table


def _attack_name(attack: str | type | torchattacks.attack.Attack) -> str:
    """The attack's name in the table, once it is known to be one (ValueError or TypeError)."""
    if isinstance(attack, str):
        if attack not in ATTACKS:
            raise ValueError(
                f"unknown attack {attack!r}: use one of {sorted(ATTACKS)}, or pass a torchattacks "
                "attack class (e.g. torchattacks.CW) or instance"
            )
        return attack
    base = require_torchattacks().attack.Attack
    if isinstance(attack, type) and issubclass(attack, base):
        return attack.__name__
    if isinstance(attack, base):
        return type(attack).__name__
    raise TypeError(f"attacks must be names, torchattacks classes or instances, got {attack!r}")


def check_attacks(attacks: Sequence[str | type | torchattacks.attack.Attack]) -> None:
    """Check every attack: an unknown name or a non-attack is an error before any work (or, in a
    callback, before training), not at the first attack."""
    if isinstance(attacks, str) or not attacks:
        raise ValueError(f"attacks must be a non-empty sequence of attacks, got {attacks!r}")
    for attack in attacks:
        _attack_name(attack)


def _predict(model: nn.Module, batches: Iterable[torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(x).argmax(dim=1) for x in batches]).cpu().numpy()
