"""Evidence: which stopping rule lets a user train on *all* labelled data and still stop in time?

    python benchmarks/early_stopping.py [--seeds 3] [--no-train] [--figure docs/early_stopping.png]

Real Lightning runs on scikit-learn's digits and on Fashion-MNIST (the Debian package
``dataset-fashion-mnist``, subsampled to 4,000 labelled images), each with clean labels and with
20 % and 40 % of the labels replaced by a random other class, for an MLP and a small CNN and
several seeds. Every setting is trained twice, to ``max_epochs``:

* on all labelled data, with a :class:`TopologyMonitor` (training data only) — the series every
  validation-free rule reads: the training loss and the topology of the last hidden block;
* on 80 % of it, the other 20 % held out as validation set (noisy like the rest) — the series of
  Lightning's ``EarlyStopping(monitor="val_loss")``, the usual practice.

The test accuracy is recorded every epoch for the evaluation only. Every rule is then replayed on
the recorded series with the same rule objects ``TopologicalEarlyStopping`` and the tests use
(``PlateauRule`` with ``rebound=None`` stops where Lightning's ``EarlyStopping`` does), over a grid
of its settings, and compared with training to the end, with validation-loss early stopping (at
its stop, and restoring its best checkpoint) and with the oracle that stops at the earliest epoch
whose test accuracy is within 0.5 pt of the final one.

Runs are cached one file each in ``benchmarks/.cache/early_stopping/``: an interrupted study
resumes, and a finished one re-analyses in seconds. About an hour on 2 CPU cores for 3 seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench_data import evaluate, load
from topo_monitor import PlateauRule, StoppingRule, TopologyMonitor
from topo_monitor.callbacks.early_stopping import DEFAULT_RULE, RULES, make_rule

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache", "early_stopping")
DATASETS = ("digits", "fashion")
NOISES = (0.0, 0.2, 0.4)
ARCHS = ("mlp", "cnn")
MAX_EPOCHS = {"digits": 60, "fashion": 50}
VALIDATION_FRACTION = 0.2
ORACLE_TOLERANCE = 0.005
TOPOLOGY = ("E0_1", "E0_1_scaled", "E0_mean_lifespan", "PHdim", "H0_velocity")


@dataclass(frozen=True)
class Setting:
    dataset: str
    arch: str
    noise: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.arch}-noise{self.noise:g}-seed{self.seed}"


# ---------------------------------------------------------------------------------------- data


def noisy(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """``fraction`` of the labels replaced by a uniformly drawn *other* class."""
    rng = np.random.default_rng(1000 + seed)
    out = labels.numpy().copy()
    flip = rng.choice(len(out), round(fraction * len(out)), replace=False)
    out[flip] = (out[flip] + rng.integers(1, 10, len(flip))) % 10
    return torch.as_tensor(out)


# ---------------------------------------------------------------------------------------- model


def network(arch: str, side: int) -> nn.Module:
    if arch == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(side * side, 256),
            nn.ReLU(),
            nn.Linear(256, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        )
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (side // 4) ** 2, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


class Classifier(pl.LightningModule):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.losses: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.losses.append(float(loss.detach()) * len(y))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class Recorder(pl.Callback):
    """Per epoch: the training loss (epoch mean), the evaluation sets, and the monitor's record."""

    def __init__(
        self,
        n_train: int,
        evaluate: dict[str, tuple[torch.Tensor, torch.Tensor]],
        monitor: TopologyMonitor | None,
    ) -> None:
        self.n_train, self.evaluate, self.monitor = n_train, evaluate, monitor
        self.series: dict[str, list] = {"train_loss": []}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Classifier) -> None:
        self.series["train_loss"].append(sum(pl_module.losses) / self.n_train)
        pl_module.losses.clear()
        for name, (X, y) in self.evaluate.items():
            loss, acc = evaluate(pl_module, X, y)
            self.series.setdefault(f"{name}_loss", []).append(loss)
            self.series.setdefault(f"{name}_acc", []).append(acc)
        if self.monitor is not None:
            self.monitor.update(trainer, pl_module)
            record = self.monitor.history[-1]
            assert record.epoch == trainer.current_epoch
            self.series.setdefault("topology", []).append(record.values)
            self.series.setdefault("network", []).append(record.network)
            self.series.setdefault("extras", []).append(record.extras)
            self.series["blocks"] = record.blocks


def train(setting: Setting, kind: str) -> dict:
    """One run: ``"all"`` labelled data with the monitor; ``"split"``, 80 % of it with a
    validation set and no monitor; ``"functional"``, all data with the functional graph only
    (a second pass: monitoring never changes training, so its accuracies repeat ``"all"``'s)."""
    split = kind == "split"
    X, y_clean, X_test, y_test = load(setting.dataset)
    y = noisy(y_clean, setting.noise, setting.seed)
    evaluate = {"test": (X_test, y_test)}
    if split:
        order = np.random.default_rng(2000 + setting.seed).permutation(len(y))
        held = order[: int(VALIDATION_FRACTION * len(y))]
        kept = np.sort(order[len(held) :])
        evaluate["val"] = (X[held], y[held])
        X, y = X[kept], y[kept]
    pl.seed_everything(setting.seed, workers=True, verbose=False)
    model = Classifier(network(setting.arch, X.shape[-1]))
    monitor = (
        None
        if split
        else TopologyMonitor(
            samples_per_class=100,
            seed=setting.seed,
            figures_every_n_epochs=None,
            metrics=("functional",) if kind == "functional" else ("e0", "phdim", "sw"),
        )
    )
    recorder = Recorder(len(y), evaluate, monitor)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(
            max_epochs=MAX_EPOCHS[setting.dataset],
            callbacks=[monitor, recorder] if monitor else [recorder],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
            num_sanity_val_steps=0,
        )
        loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True)
        trainer.fit(model, loader)
    return {
        "setting": asdict(setting),
        "kind": kind,
        "seconds": time.perf_counter() - start,
        **recorder.series,
    }


def settings(seeds: int) -> list[Setting]:
    """Seed-major, so that an interrupted study already covers every data set and noise."""
    return [
        Setting(d, a, n, s) for s in range(seeds) for d in DATASETS for n in NOISES for a in ARCHS
    ]


def run_all(seeds: int, kinds: tuple[str, ...], train_missing: bool) -> list[tuple[Setting, dict]]:
    """Every setting whose runs of ``kinds`` are all cached (trained first if missing)."""
    os.makedirs(CACHE, exist_ok=True)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    out = []
    for setting in settings(seeds):
        runs = {}
        for kind in kinds:
            path = os.path.join(CACHE, f"{setting.name}-{kind}.json")
            if not os.path.exists(path):
                if not train_missing:
                    break
                run = train(setting, kind)
                with open(path + ".tmp", "w") as f:
                    json.dump(run, f)
                os.replace(path + ".tmp", path)
                print(f"trained {setting.name} {kind}: {run['seconds']:.0f} s", flush=True)
            with open(path) as f:
                runs[kind] = json.load(f)
        if len(runs) == len(kinds):
            out.append((setting, runs))
    return out


# ---------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """A stopping rule replayed on one recorded series of a run."""

    family: str
    label: str
    make: Callable[[], StoppingRule]
    series: Callable[[dict], list[float]]
    run: str = "all"  # "all": trained on all data; "split": 80 %, with a validation set
    shown: bool = False  # this family's setting in the per-setting table

    def stop(self, runs: dict[str, dict]) -> int:
        values = self.series(runs[self.run])
        stop = self.make().replay(values)
        return len(values) - 1 if stop is None else stop


def topology(metric: str, block: int = -2) -> Callable[[dict], list[float]]:
    """The series of a topology metric of a block (default: the last hidden one)."""

    def series(run: dict) -> list[float]:
        return [
            math.nan if values[metric][block] is None else values[metric][block]
            for values in run["topology"]
        ]

    return series


def monitored(metric: str) -> Callable[[dict], list[float]]:
    """The series of ``topology/<metric>/last_hidden``, as TopologicalEarlyStopping reads it."""
    _, name, block = metric.split("/")
    assert block == "last_hidden", metric
    return topology(name)


def per_network(name: str) -> Callable[[dict], list[float]]:
    """The series of a per-network value (the functional graph's), from the functional pass."""

    def series(run: dict) -> list[float]:
        return [math.nan if v.get(name) is None else v[name] for v in run["network"]]

    return series


def rule_grid(functional: bool = False) -> list[Rule]:
    """Every rule at every setting of its grid; ``shown`` marks the setting of the main table.

    ``functional`` adds the rules on the functional graph (Corneanu et al.: memorizing moves the
    1-D cavities to higher edge density, so their peak density turns up)."""
    default, metric = make_rule()
    rules = [
        Rule(
            f"default: TopologicalEarlyStopping() ({DEFAULT_RULE})",
            _describe(default),
            lambda: make_rule()[0],
            monitored(metric),
            shown=True,
        )
    ]
    for epochs in (5, 10, 20):
        rules.append(
            Rule(
                "fixed budget (all data)",
                f"{epochs} epochs",
                lambda e=epochs: FixedBudget(e),
                lambda run: run["train_loss"],
                shown=epochs == 10,
            )
        )
    for patience in (2, 3, 5, 8):
        rules.append(
            Rule(
                "val_loss EarlyStopping (80 % of the data)",
                f"patience={patience}",
                lambda p=patience: PlateauRule(patience=p),
                lambda run: run["val_loss"],
                run="split",
                shown=patience == 3,
            )
        )
        for tol in (0.005, 0.01, 0.02):
            rules.append(
                Rule(
                    "train_loss plateau",
                    f"min_delta={tol:.1%} rel, patience={patience}",
                    lambda p=patience, t=tol: PlateauRule(
                        patience=p, min_delta=t, min_delta_mode="rel"
                    ),
                    lambda run: run["train_loss"],
                    shown=(patience, tol) == (3, 0.01),
                )
            )
        rules.append(
            Rule(
                "plateau: E0_1 stops falling (old default)",
                f"patience={patience}, rebound=25%",
                lambda p=patience: make_rule("plateau", patience=p)[0],
                monitored(RULES["plateau"][2]),
                shown=patience == 3,
            )
        )
        for name in ("E0_1_scaled", "PHdim"):
            for delta in (0.0, 0.005, 0.01):
                rules.append(
                    Rule(
                        f"minimum: {name} stops falling",
                        f"min_delta={delta:.1%} rel, patience={patience}",
                        lambda p=patience, d=delta: make_rule("minimum", patience=p, min_delta=d)[
                            0
                        ],
                        topology(name),
                        shown=(patience, delta) == (3, 0.0),
                    )
                )
            for tol in (0.01, 0.02, 0.05):
                rules.append(
                    Rule(
                        f"convergence: {name} still",
                        f"tol={tol:.0%}, patience={patience}",
                        lambda p=patience, t=tol: make_rule("convergence", patience=p, tol=t)[0],
                        topology(name),
                        shown=(patience, tol) == (3, 0.02),
                    )
                )
        if functional:
            for name in ("functional_peak_density_H1", "functional_midlife_H1"):
                rules.append(
                    Rule(
                        f"functional: {name} stops falling",
                        f"patience={patience}",
                        lambda p=patience: PlateauRule(patience=p),
                        per_network(name),
                        run="functional",
                        shown=patience == 5 and name == "functional_midlife_H1",
                    )
                )
        for fraction in (0.1, 0.2, 0.3):
            rules.append(
                Rule(
                    "velocity: H0_velocity slow",
                    f"fraction={fraction:.0%}, patience={patience}",
                    lambda p=patience, f=fraction: make_rule("velocity", patience=p, fraction=f)[0],
                    monitored(RULES["velocity"][2]),
                    shown=(patience, fraction) == (3, 0.2),
                )
            )
    return rules


class FixedBudget(StoppingRule):
    """Stop after a fixed number of epochs, whatever happens: the floor a rule must beat."""

    def __init__(self, epochs: int) -> None:
        self.epochs, self.patience = epochs, epochs
        self.reset()

    def reset(self) -> None:
        self.wait_count = 0

    def update(self, value: float, epoch: int, name: str = "metric") -> str | None:
        self.wait_count += 1
        return "budget spent" if self.wait_count >= self.epochs else None

    def state_dict(self) -> dict:
        return {"wait_count": self.wait_count}

    def load_state_dict(self, state: dict) -> None:
        self.wait_count = state["wait_count"]


def _describe(rule: StoppingRule) -> str:
    options = {
        k: v for k, v in vars(rule).items() if k in ("patience", "tol", "fraction", "min_delta")
    }
    return ", ".join(f"{k}={v:g}" for k, v in options.items())


# ---------------------------------------------------------------------------------------- analysis


@dataclass
class Outcome:
    """One rule on one group of runs (a data set and noise level)."""

    delta: np.ndarray  # test accuracy at the stop minus training to the end, per run (pt)
    vs_val: np.ndarray  # minus validation-loss early stopping (patience 3), per run (pt)
    epochs: np.ndarray  # epochs trained, per run
    saved_vs_oracle: float  # mean epochs saved / mean epochs the oracle saves


def analyse(studied: list[tuple[Setting, dict]]) -> tuple[list[Rule], dict, dict]:
    """Every rule's outcome per (data set, noise), and the reference numbers of each group."""
    rules = rule_grid(functional=all("functional" in runs for _, runs in studied))
    val_es = next(r for r in rules if r.run == "split" and r.shown)
    groups: dict[tuple[str, float], list[int]] = {}
    for i, (setting, _) in enumerate(studied):
        groups.setdefault((setting.dataset, setting.noise), []).append(i)

    def at_stop(rule: Rule, i: int) -> tuple[float, int]:
        runs = studied[i][1]
        stop = rule.stop(runs)
        return runs[rule.run]["test_acc"][stop], stop + 1

    references, outcomes = {}, {}
    for key, members in sorted(groups.items()):
        epochs = MAX_EPOCHS[key[0]]
        full = np.array([studied[i][1]["all"]["test_acc"][-1] for i in members])
        oracle = []
        for i in members:
            acc = np.array(studied[i][1]["all"]["test_acc"])
            oracle.append(int(np.flatnonzero(acc >= acc[-1] - ORACLE_TOLERANCE)[0]) + 1)
        val = np.array([at_stop(val_es, i)[0] for i in members])
        best_checkpoint = []
        for i in members:
            split = studied[i][1]["split"]
            stop = at_stop(val_es, i)[1]
            best = int(np.argmin(split["val_loss"][:stop]))
            best_checkpoint.append(split["test_acc"][best])
        references[key] = {
            "runs": len(members),
            "epochs": epochs,
            "full": full.mean(),
            "peak": np.mean([max(studied[i][1]["all"]["test_acc"]) for i in members]),
            "oracle": np.mean(oracle),
            "val_best_checkpoint": np.mean(best_checkpoint),
        }
        for rule in rules:
            acc, trained = map(np.array, zip(*(at_stop(rule, i) for i in members), strict=True))
            outcomes[rule, key] = Outcome(
                delta=100 * (acc - full),
                vs_val=100 * (acc - val),
                epochs=trained,
                saved_vs_oracle=(epochs - trained.mean()) / max(epochs - np.mean(oracle), 1e-9),
            )
    return rules, references, outcomes


def report(rules: list[Rule], references: dict, outcomes: dict) -> None:
    keys = sorted(references)
    print(
        "\n1. Per data set and label noise (mean over architectures and seeds): test accuracy "
        "at the stop,\n   Δ against training to max_epochs on all data (pt), and epochs trained."
        "\n   val_loss ES trains on 80 % of the data; every other rule on all of it.\n"
    )
    for key in keys:
        ref = references[key]
        print(
            f"== {key[0]}, label noise {key[1]:.0%}: {ref['runs']} runs; to the end "
            f"({ref['epochs']} epochs) {100 * ref['full']:.1f} %, best epoch "
            f"{100 * ref['peak']:.1f} %; oracle stops after {ref['oracle']:.1f} epochs; "
            f"val_loss ES with its best checkpoint {100 * ref['val_best_checkpoint']:.1f} %"
        )
        print(
            f"   {'rule':48s} {'setting':30s} {'Δacc':>6s} {'worst':>6s} {'vs valES':>8s} "
            f"{'epochs':>6s}"
        )
        for rule in rules:
            if rule.shown:
                o = outcomes[rule, key]
                print(
                    f"   {rule.family:48s} {rule.label:30s} {o.delta.mean():+6.1f} "
                    f"{o.delta.min():+6.1f} "
                    f"{o.vs_val.mean():+8.1f} {o.epochs.mean():6.1f}"
                )
        print()
    print(
        "2. Every setting of every rule over all data sets and noise levels: the mean Δacc; "
        "the worst\n   group's mean Δacc, mean Δ vs val_loss ES and saved/oracle (epochs saved "
        "over the oracle's);\n   the worst single run. Target: worst group ≥ -0.5 pt, "
        "≥ 0 vs valES, saved/oracle ≥ 0.5.\n"
    )
    print(
        f"   {'rule':48s} {'setting':30s} {'mean':>5s} {'worst':>6s} {'vs valES':>8s} "
        f"{'saved':>5s} {'run':>6s}"
    )
    for rule in rules:
        if rule.run == "split":
            continue
        group = [outcomes[rule, key] for key in keys]
        meets = (
            min(o.delta.mean() for o in group) >= -0.5
            and min(o.vs_val.mean() for o in group) >= 0
            and min(o.saved_vs_oracle for o in group) >= 0.5
        )
        print(
            f"   {rule.family:48s} {rule.label:30s} "
            f"{np.mean([o.delta.mean() for o in group]):+5.1f} "
            f"{min(o.delta.mean() for o in group):+6.1f} "
            f"{min(o.vs_val.mean() for o in group):+8.1f} "
            f"{min(o.saved_vs_oracle for o in group):5.2f} "
            f"{min(o.delta.min() for o in group):+6.1f}{'  meets' if meets else ''}"
        )


def figure(studied: list[tuple[Setting, dict]], rules: list[Rule], path: str) -> None:
    """Test accuracy vs epoch of seed 0's MLP per data set and noise, each rule's stop marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rules if r.shown]
    chosen = {(s.dataset, s.noise): runs for s, runs in studied if s.seed == 0 and s.arch == "mlp"}
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), sharey="row")
    markers = "o^svDPX*hp<>"[: len(shown)]
    for ax, key in zip(axes.flat, sorted(chosen), strict=False):
        runs = chosen[key]
        full, split = runs["all"], runs["split"]
        ax.plot(
            np.arange(1, len(full["test_acc"]) + 1),
            full["test_acc"],
            color="0.3",
            lw=1.5,
            label="all data (test accuracy)",
        )
        ax.plot(
            np.arange(1, len(split["test_acc"]) + 1),
            split["test_acc"],
            color="0.7",
            lw=1,
            ls="--",
            label="80 % of the data",
        )
        for rule, marker in zip(shown, markers, strict=True):
            stop = rule.stop(runs)
            ax.plot(
                stop + 1,
                runs[rule.run]["test_acc"][stop],
                marker,
                ms=8,
                mfc="none",
                mew=1.8,
                label=rule.family.split(" (")[0],
            )
        ax.set_title(f"{key[0]}, {key[1]:.0%} label noise (MLP, seed 0)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    print(f"\nfigure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-train", action="store_true", help="analyse the cached runs only")
    parser.add_argument("--figure", help="write the figure of test accuracy and stops here")
    parser.add_argument(
        "--functional",
        action="store_true",
        help="add the functional-graph rules (a second all-data pass with the functional graph)",
    )
    args = parser.parse_args()
    kinds = ("all", "split", "functional") if args.functional else ("all", "split")
    studied = run_all(args.seeds, kinds, train_missing=not args.no_train)
    print(f"{len(studied)} settings with runs {kinds} cached")
    if args.functional:  # monitoring never changes training: the two passes must agree
        gap = max(
            abs(a - b)
            for _, runs in studied
            for a, b in zip(runs["all"]["test_acc"], runs["functional"]["test_acc"], strict=True)
        )
        print(f"largest test-accuracy difference between the two all-data passes: {gap:.2g}")
    rules, references, outcomes = analyse(studied)
    report(rules, references, outcomes)
    if args.figure:
        figure(studied, rules, args.figure)


if __name__ == "__main__":
    main()
