"""Evidence, done fairly: can a test-free measure rank the generalization gaps of converged models?

    python benchmarks/generalization.py [--family digits fashion] [--retrain]

The protocol of Jiang et al. 2019 ("Fantastic generalization measures") and of the NeurIPS 2020
PGDL competition: a *complete factorial grid* of hyperparameters, every model trained to the same
stopping point, so a measure must explain the generalization gap of finished models rather than
how far optimisation got.

* Families: MLPs (Flatten, then ``depth`` × [Linear, ReLU, Dropout], then a linear head), Adam,
  on digits (1,347 labelled images, 450 test: ``bench_data.load``) and on a
  Fashion-MNIST subsample (4,000 training images, 400 per class; 2,000 test images). Grid: width ×
  depth × weight decay × dropout × batch size at 2 levels each, × learning rate (1e-3, 3e-3) on
  digits (2e-3 on Fashion-MNIST, whose runs are 6× slower) (:data:`GRIDS`), 2 seeds: 128 runs on
  digits, 64 on Fashion-MNIST.
* Stopping: at the end of the first epoch whose training cross-entropy (eval mode, whole training
  set) is ≤ 0.01, or at the epoch cap (:data:`MAX_EPOCHS`). Runs that hit the cap are recorded
  and left out of the converged analysis.
* Measures, on training data only, through the public ``measure`` API every 5th epoch and at the
  stop (a 50-per-class probe of the training set): the topology of each hidden block (E0_1,
  E0_1_scaled, E0 mean lifespan, E1_1_scaled, PHdim), of the last hidden block, of the first, and
  the mean over hidden blocks (``@first``, ``@mean``), the functional graph's summaries, and the
  baselines a reviewer demands: final training loss, output margin, parameter ℓ2 norm, distance
  from initialisation, and of the last hidden representation the Davies–Bouldin index, NC1
  (within-class variability collapse) and effective rank.
* Scores over the converged runs (gap = train accuracy − test accuracy): PGDL's conditional
  mutual information (×100, min over pairs of hyperparameters), granulated Kendall Ψ, Kendall τ
  with the gap, and the nested leave-one-out MAE of ``GeneralizationPredictor`` with that one
  feature on test accuracy — every error on the same runs (a run without the feature is
  predicted by the mean). Then the predictor's own choice among all topological features, all
  baselines, and both.

Each run is cached as one JSON file in ``benchmarks/.cache/generalization/<family>/`` the moment it
finishes: an interrupted study resumes, and a finished one re-analyses in seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench_data import evaluate, load
from topo_monitor import measure
from topo_monitor.analysis.generalization import (
    CalibrationSet,
    GeneralizationPredictor,
)
from topo_monitor.analysis.pgdl import conditional_mutual_information, granulated_kendall
from topo_monitor.analysis.statistics import kendall_tau, paired_bootstrap
from topo_monitor.probing import ProbeSet
from topo_monitor.probing.baselines import param_distance
from topo_monitor.tda.geometry import GEOMETRY

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache", "generalization")
GRIDS = {
    "digits": {
        "width": (32, 128),
        "depth": (1, 3),
        "weight_decay": (0.0, 1e-4),
        "dropout": (0.0, 0.3),
        "batch_size": (32, 128),
        "lr": (1e-3, 3e-3),
    },
    "fashion": {  # 6x slower per run than digits: learning rate fixed, to stay within an hour
        "width": (64, 256),
        "depth": (1, 3),
        "weight_decay": (0.0, 1e-4),
        "dropout": (0.0, 0.3),
        "batch_size": (32, 128),
    },
}
SEEDS = (0, 1)
MAX_EPOCHS = {"digits": 300, "fashion": 150}
TARGET_LOSS = 0.01
MEASURE_EVERY = 5
BLOCK_METRICS = ("E0_1", "E0_1_scaled", "E0_mean_lifespan", "E1_1_scaled", "PHdim")
NETWORK = (
    "functional_bars_H1",
    "functional_midlife_H1",
    "functional_peak_density_H1",
    "functional_bars_H2",
    "functional_midlife_H2",
)
BASELINES = ("train_loss", "margin", "param_norm", "param_distance", *GEOMETRY)
TOPOLOGY = (
    *BLOCK_METRICS,
    *(f"{m}@first" for m in BLOCK_METRICS),
    *(f"{m}@mean" for m in BLOCK_METRICS),
    *NETWORK,
)


@dataclass(frozen=True)
class Run:
    family: str
    width: int
    depth: int
    weight_decay: float
    dropout: float
    batch_size: int
    seed: int
    lr: float = 2e-3

    @property
    def name(self) -> str:
        return (
            f"w{self.width}-d{self.depth}-wd{self.weight_decay:g}-p{self.dropout:g}"
            f"-b{self.batch_size}-lr{self.lr:g}-s{self.seed}"
        )

    @property
    def hyperparameters(self) -> dict[str, float]:
        """The values of the family's grid (what CMI and Ψ condition on)."""
        return {k: getattr(self, k) for k in GRIDS[self.family]}


def grid(family: str) -> list[Run]:
    names = list(GRIDS[family])
    return [
        Run(family, **dict(zip(names, values, strict=True)), seed=seed)
        for values in itertools.product(*GRIDS[family].values())
        for seed in SEEDS
    ]


class MLP(pl.LightningModule):
    def __init__(self, run: Run, inputs: int) -> None:
        super().__init__()
        self.run = run
        units, width = [], inputs
        for _ in range(run.depth):
            units.append(
                nn.Sequential(nn.Linear(width, run.width), nn.ReLU(), nn.Dropout(run.dropout))
            )
            width = run.width
        self.flatten = nn.Flatten()
        self.hidden = nn.ModuleList(units)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.flatten(x)
        for unit in self.hidden:
            h = unit(h)
        return self.head(h)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        run = self.run
        return torch.optim.Adam(self.parameters(), lr=run.lr, weight_decay=run.weight_decay)


def features(record, model: nn.Module, initial: dict, train_loss: float) -> dict[str, float]:
    """The run's test-free measures at one epoch (see the module docstring)."""
    hidden = list(range(len(record.blocks) - 1))  # the last block is the model output
    out: dict[str, float] = {}
    for metric in BLOCK_METRICS:
        values = [record.values.get(metric, [math.nan] * len(record.blocks))[b] for b in hidden]
        out[metric], out[f"{metric}@first"] = values[-1], values[0]
        out[f"{metric}@mean"] = float(np.mean(values))
    for metric in GEOMETRY:
        out[metric] = record.values[metric][hidden[-1]]
    out.update({k: v for k, v in record.network.items() if k in NETWORK})
    out["margin"], out["param_norm"] = record.extras["margin"], record.extras["param_norm"]
    out["param_distance"] = param_distance(model, initial)
    out["train_loss"] = train_loss
    return {k: float(v) for k, v in out.items()}


class Study(pl.Callback):
    """Per epoch: training loss and accuracy (eval mode), test accuracy; measures every
    ``MEASURE_EVERY`` epochs and at the stop; stops at the target training loss."""

    def __init__(self, run: Run, train: tuple, test: tuple, probe: ProbeSet) -> None:
        self.run, self.train, self.test, self.probe = run, train, test, probe
        self.epochs: list[dict] = []
        self.record = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.initial = {k: p.detach().clone() for k, p in pl_module.named_parameters()}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss, accuracy = evaluate(pl_module, *self.train)
        _, test_accuracy = evaluate(pl_module, *self.test)
        epoch = trainer.current_epoch + 1
        done = loss <= TARGET_LOSS or epoch >= trainer.max_epochs
        row = {"epoch": epoch, "train_loss": loss, "train_acc": accuracy, "test_acc": test_accuracy}
        if done or epoch % MEASURE_EVERY == 0:
            self.record = measure(
                pl_module,
                self.probe,
                metrics=("e0", "phdim", "sw", "functional", "geometry"),
                homology_dims=(0, 1),
                h1_max_points=100,
                seed=self.run.seed,
                epoch=epoch,
                previous=self.record,
            )
            row["features"] = features(self.record, pl_module, self.initial, loss)
        self.epochs.append(row)
        if loss <= TARGET_LOSS:
            trainer.should_stop = True


def train(run: Run) -> dict:
    x, y, x_test, y_test = load(run.family)
    probe = ProbeSet.from_tensors(*_probe(x, y, 50))
    pl.seed_everything(run.seed, verbose=False)
    model = MLP(run, x[0].numel())
    study = Study(run, (x, y), (x_test, y_test), probe)
    start = time.perf_counter()
    trainer = pl.Trainer(
        max_epochs=MAX_EPOCHS[run.family],
        callbacks=[study],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    g = torch.Generator().manual_seed(run.seed)
    trainer.fit(model, DataLoader(TensorDataset(x, y), run.batch_size, shuffle=True, generator=g))
    last = study.epochs[-1]
    return {
        "run": asdict(run),
        "converged": last["train_loss"] <= TARGET_LOSS,
        "seconds": time.perf_counter() - start,
        "epochs": study.epochs,
    }


def _probe(x: torch.Tensor, y: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` training items of each class (fixed across runs)."""
    chosen = torch.cat([torch.nonzero(y == c).ravel()[:per_class] for c in range(10)])
    return x[chosen], y[chosen]


def cached_runs(family: str, retrain: bool) -> list[dict]:
    folder = os.path.join(CACHE, family)
    os.makedirs(folder, exist_ok=True)
    runs, runs_grid = [], grid(family)
    for i, run in enumerate(runs_grid):
        path = os.path.join(folder, run.name + ".json")
        if retrain or not os.path.exists(path):
            result = train(run)
            with open(path, "w") as f:
                json.dump(result, f)
            last = result["epochs"][-1]
            print(
                f"  [{i + 1}/{len(runs_grid)}] {family} {run.name}: "
                f"{len(result['epochs'])} epochs, train loss {last['train_loss']:.4f}, "
                f"test acc {last['test_acc']:.3f} "
                f"({result['seconds']:.0f} s)",
                flush=True,
            )
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def report(family: str, runs: list[dict]) -> None:
    converged = [r for r in runs if r["converged"]]
    seconds = sum(r["seconds"] for r in runs)
    print(
        f"\n=== {family}: {len(runs)} runs trained in {seconds / 60:.1f} min (2 CPU cores); "
        f"{len(converged)} reached training loss <= {TARGET_LOSS} "
        f"(the others hit the {MAX_EPOCHS[family]}-epoch cap and are left out)"
    )
    missing = [Run(**r["run"]).name for r in runs if not r["converged"]]
    if missing:
        print("   not converged: " + ", ".join(missing))
    finals = [r["epochs"][-1] for r in converged]
    hyper = [Run(**r["run"]).hyperparameters for r in converged]
    train_acc = np.array([f["train_acc"] for f in finals])
    test_acc = np.array([f["test_acc"] for f in finals])
    gap = train_acc - test_acc
    print(
        f"   test accuracy {test_acc.min():.3f} .. {test_acc.max():.3f} "
        f"(std {test_acc.std():.3f}); train accuracy >= {train_acc.min():.3f}; "
        f"gap {gap.min():.3f} .. {gap.max():.3f}"
    )
    # Two targets: test accuracy, and the gap (as 1 - gap, a number in [0, 1] like an accuracy:
    # the absolute errors are the gap's).
    calibration, on_gap = CalibrationSet(), CalibrationSet()
    for r, f, g in zip(converged, finals, gap, strict=True):
        calibration.add(Run(**r["run"]).name, f["test_acc"], f["features"])
        on_gap.add(Run(**r["run"]).name, 1.0 - float(g), f["features"])

    print(
        f"\n   {'measure':28s} {'kind':9s} {'CMI x100':>8s} {'Psi':>6s} {'tau(gap)':>8s} "
        f"{'LOO acc':>8s} {'LOO gap':>8s} {'cover':>6s}"
    )
    mean = GeneralizationPredictor(topology=("train_loss",), baselines=()).score(calibration)
    mean_gap = GeneralizationPredictor(topology=("train_loss",), baselines=()).score(on_gap)
    print(
        f"   {'(family mean)':28s} {'':36s} {mean['loo_mae']['mean']:8.4f} "
        f"{mean_gap['loo_mae']['mean']:8.4f}"
    )
    rows = []
    baseline_errors: dict[str, np.ndarray] = {}
    for name in BASELINES + TOPOLOGY:
        values = np.array([f["features"].get(name, math.nan) for f in finals])
        ok = np.isfinite(values)
        kind = "baseline" if name in BASELINES else "topology"
        if ok.sum() < 4:
            print(f"   {name:28s} {kind:9s} (measured on {ok.sum()} runs)")
            continue
        kept = [h for h, k in zip(hyper, ok, strict=True) if k]
        cmi = 100 * conditional_mutual_information(values[ok], gap[ok], kept)
        psi, _ = granulated_kendall(values[ok], gap[ok], kept)
        tau = kendall_tau(values[ok], gap[ok])
        single = GeneralizationPredictor(topology=(name,), baselines=())
        score = single.score(calibration)
        mae = score["loo_mae"]["topology"]
        if kind == "baseline":
            baseline_errors[name] = score["loo_errors"]["topology"]
        mae_gap = single.score(on_gap)["loo_mae"]["topology"]
        rows.append((name, kind, cmi, psi, tau, mae))
        print(
            f"   {name:28s} {kind:9s} {cmi:8.2f} {psi:6.3f} {tau:8.3f} {mae:8.4f} {mae_gap:8.4f} "
            f"{score['coverage'][name]:6.0%}"
        )
    every = GeneralizationPredictor(topology=TOPOLOGY, baselines=BASELINES)
    loo, loo_gap = every.score(calibration), every.score(on_gap)
    print("\n   GeneralizationPredictor, nested leave-one-out MAE (same runs): test accuracy, gap")
    for group in ("mean", "baselines", "topology", "both", "chosen"):
        print(f"     {group:10s} {loo['loo_mae'][group]:.4f}  {loo_gap['loo_mae'][group]:.4f}")
    # The two seeds of a configuration are drawn together (a cluster bootstrap).
    configurations = [Run(**r["run"]).name.rsplit("-s", 1)[0] for r in converged]
    hindsight = min(baseline_errors, key=lambda name: baseline_errors[name].mean())
    print(
        "   Does topology beat the baselines? MAE(reference) - MAE(group), paired over the runs, "
        "95 % bootstrap interval over configurations (> 0: the group is better), test accuracy:"
        f"\n     {'':10s} {'vs baselines (nested)':>28s} {'vs ' + hindsight + ' (hindsight)':>28s}"
        f" {'vs the mean':>28s}"
    )
    references = (loo["loo_errors"]["baselines"], baseline_errors[hindsight])
    for group in ("topology", "both", "chosen"):
        cells = []
        for reference in (*references, loo["loo_errors"]["mean"]):
            errors = loo["loo_errors"][group]
            if errors is None or reference is None:
                cells.append(f"{'-':>28s}")
                continue
            gain, low, high = paired_bootstrap(errors, reference, groups=configurations)
            cells.append(f"{gain:+.4f} [{low:+.4f}, {high:+.4f}]".rjust(28))
        print(f"     {group:10s} " + " ".join(cells))
    fitted = GeneralizationPredictor(topology=TOPOLOGY, baselines=BASELINES).fit(calibration)
    print(f"     fitted on all converged runs: {fitted!r}")
    for kind in ("baseline", "topology"):
        best = max((r for r in rows if r[1] == kind), key=lambda r: r[2])
        print(f"   best {kind} by CMI: {best[0]} ({best[2]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--retrain", action="store_true", help="ignore the cache")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.set_num_threads(1)  # small MLPs: one thread is as fast, and leaves a core free
    for family in args.family:
        report(family, cached_runs(family, args.retrain))


if __name__ == "__main__":
    main()
