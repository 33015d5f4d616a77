"""Evidence: which stopping rule lets a user train on *all* labelled data and still stop in time,
on data it was not chosen on?

    python benchmarks/early_stopping.py [--shard i/k] [--no-train] [--figure PATH]

Real Lightning runs on the six data families of ``families.py`` (digits, Fashion-MNIST from the
Debian package ``dataset-fashion-mnist``, and four made here), two architectures each, four
optimizers (SGD with momentum at a small and, with a cosine schedule, a large learning rate; Adam;
AdamW with a cosine schedule), clean labels and 20 % / 40 % of the labels replaced by a random
other class, 2 seeds, 60 epochs: 288 settings. Every setting is trained twice:

* on all labelled data, with a :class:`TopologyMonitor` (training data only) — the series every
  validation-free rule reads: the training loss and the topology of the last hidden block;
* on 80 % of it, the other 20 % held out as validation set (noisy like the rest) — the series of
  Lightning's ``EarlyStopping(monitor="val_loss")``, the usual practice.

The test accuracy is recorded every epoch for the evaluation only. Every rule is then replayed on
the recorded series with the rule objects ``TopologicalEarlyStopping`` builds (``make_rule``),
over a grid of settings, and chosen by leaving one family out: the setting that best meets the bar
(``CLEAN_MEAN``, ``CLEAN_WORST``, ``NOISY_VS_VAL``, ``SAVED``) on the other five families is
scored on the one left out, beside training to the end, validation-loss early stopping (at its
stop, and restoring its best checkpoint), fixed budgets and the oracle that stops at the earliest
epoch whose test accuracy is within 0.5 pt of the final one.

Runs are cached one file each in ``benchmarks/.cache/early_stopping_v2/``: an interrupted study
resumes, and a finished one re-analyses in ~20 s. About 100 minutes on 2 CPU cores in one process;
``--shard 0/2`` and ``--shard 1/2`` in two processes take about 50.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench_data import evaluate
from families import ARCHS, FAMILIES, KIND, family, network
from topo_monitor import PlateauRule, StoppingRule, TopologyMonitor
from topo_monitor.callbacks.early_stopping import DEFAULT_RULE, RULES, make_rule
from topo_monitor.probing.blocks import resolve_blocks
from topo_monitor.reporting.keys import scalar_key

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache", "early_stopping_v2")
NOISES = (0.0, 0.2, 0.4)
OPTIMIZERS = ("sgd", "sgd-fast-cosine", "adam", "adamw-cosine")
SEEDS = 2
MAX_EPOCHS = 60
BATCH_SIZE = 64
VALIDATION_FRACTION = 0.2
ORACLE_TOLERANCE = 0.005
TOPOLOGY = ("E0_1", "E0_1_scaled", "PHdim", "H0_velocity")


@dataclass(frozen=True)
class Setting:
    family: str
    arch: str
    optimizer: str
    noise: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.family}-{self.arch}-{self.optimizer}-noise{self.noise:g}-seed{self.seed}"


# ---------------------------------------------------------------------------------------- data


def noisy(labels: torch.Tensor, fraction: float, classes: int, seed: int) -> torch.Tensor:
    """``fraction`` of the labels replaced by a uniformly drawn *other* class."""
    rng = np.random.default_rng(1000 + seed)
    out = labels.numpy().copy()
    flip = rng.choice(len(out), round(fraction * len(out)), replace=False)
    out[flip] = (out[flip] + rng.integers(1, classes, len(flip))) % classes
    return torch.as_tensor(out)


# ---------------------------------------------------------------------------------------- model


class Classifier(pl.LightningModule):
    def __init__(self, net: nn.Module, optimizer: str) -> None:
        super().__init__()
        self.net, self.optimizer = net, optimizer
        self.losses: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.losses.append(float(loss.detach()) * len(y))
        return loss

    def configure_optimizers(self) -> Any:
        """SGD with momentum at a small and (with a cosine schedule) a large learning rate;
        Adam; AdamW with weight decay and a cosine schedule."""
        params = self.parameters()
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=0.01, momentum=0.9)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=1e-3)
        if self.optimizer == "sgd-fast-cosine":
            opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
        else:
            opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, MAX_EPOCHS)
        return {"optimizer": opt, "lr_scheduler": schedule}


class Recorder(pl.Callback):
    """Per epoch: the training loss (mean over the epoch's batches), loss and accuracy on the
    evaluation sets (``train``: the labelled data as trained on, noisy labels included), the
    parameter norm, and the monitor's record (the selected topology metrics of every block)."""

    def __init__(
        self,
        n_train: int,
        evaluate: dict[str, tuple[torch.Tensor, torch.Tensor]],
        monitor: TopologyMonitor | None,
    ) -> None:
        self.n_train, self.evaluate, self.monitor = n_train, evaluate, monitor
        self.series: dict[str, list] = {"train_loss": [], "param_norm": []}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Classifier) -> None:
        self.series["train_loss"].append(sum(pl_module.losses) / self.n_train)
        pl_module.losses.clear()
        with torch.no_grad():
            norm = sum(float(p.square().sum()) for p in pl_module.parameters()) ** 0.5
        self.series["param_norm"].append(norm)
        for name, (X, y) in self.evaluate.items():
            loss, acc = evaluate(pl_module, X, y)
            self.series.setdefault(f"{name}_loss", []).append(loss)
            self.series.setdefault(f"{name}_acc", []).append(acc)
        if self.monitor is not None:
            self.monitor.update(trainer, pl_module)
            record = self.monitor.history[-1]
            assert record.epoch == trainer.current_epoch
            self.series.setdefault("topology", []).append(
                {m: record.values[m] for m in TOPOLOGY if m in record.values}
            )
            self.series.setdefault("extras", []).append(record.extras)
            self.series["blocks"] = record.blocks


def train(setting: Setting, kind: str) -> dict:
    """One run: ``"all"`` labelled data with the monitor; ``"split"``, 80 % of it with a
    validation set and no monitor."""
    split = kind == "split"
    data = family(setting.family)
    X, y = data.X, noisy(data.y, setting.noise, data.classes, setting.seed)
    evaluate = {"test": (data.X_test, data.y_test)}
    if split:
        order = np.random.default_rng(2000 + setting.seed).permutation(len(y))
        held = order[: int(VALIDATION_FRACTION * len(y))]
        kept = np.sort(order[len(held) :])
        evaluate["val"] = (X[held], y[held])
        X, y = X[kept], y[kept]
    evaluate["fit"] = (X, y)
    pl.seed_everything(setting.seed, workers=True, verbose=False)
    model = Classifier(network(setting.family, setting.arch, data), setting.optimizer)
    monitor = (
        None
        if split
        else TopologyMonitor(
            # the last hidden block of the default blocks (and the output, always measured):
            # what the rules read, at a fraction of the cost of every block
            blocks=resolve_blocks(model, "auto")[-1:],
            samples_per_class=50,
            seed=setting.seed,
            figures_every_n_epochs=None,
            metrics=("e0", "phdim", "sw"),
        )
    )
    recorder = Recorder(len(y), evaluate, monitor)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(
            max_epochs=MAX_EPOCHS,
            callbacks=[monitor, recorder] if monitor else [recorder],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
            num_sanity_val_steps=0,
        )
        loader = DataLoader(TensorDataset(X, y), batch_size=BATCH_SIZE, shuffle=True)
        trainer.fit(model, loader)
    return {
        "setting": asdict(setting),
        "kind": kind,
        "seconds": time.perf_counter() - start,
        **recorder.series,
    }


def settings(seeds: int = SEEDS) -> list[Setting]:
    """Seed-major, then noise, so that an interrupted study already covers every family."""
    return [
        Setting(f, a, o, n, s)
        for s in range(seeds)
        for n in NOISES
        for o in OPTIMIZERS
        for f in FAMILIES
        for a in ARCHS[KIND[f]]
    ]


def run_all(
    seeds: int, kinds: tuple[str, ...], train_missing: bool, shard: tuple[int, int] = (0, 1)
) -> list[tuple[Setting, dict]]:
    """Every setting whose runs of ``kinds`` are all cached (trained first if missing; with
    ``shard=(i, k)``, only the i-th of k shards: k processes train in parallel)."""
    os.makedirs(CACHE, exist_ok=True)
    torch.set_num_threads(1)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    out = []
    index, count = shard
    for setting in settings(seeds):
        if zlib.crc32(setting.name.encode()) % count != index:  # balanced between processes
            continue
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
                runs[kind] = normalized(json.load(f))
        if len(runs) == len(kinds):
            out.append((setting, runs))
    return out


# ---------------------------------------------------------------------------------------- rules


def normalized(run: dict) -> dict:
    """A cached run with ``train_loss`` (the epoch's mean over its batches) and ``fit_loss`` (the
    labelled data trained on, evaluated at the epoch's end) apart: runs cached by the first
    version of this study appended both to ``train_loss``, alternately."""
    epochs = len(run["test_acc"])
    if len(run["train_loss"]) == 2 * epochs:
        run = {**run, "train_loss": run["train_loss"][0::2], "fit_loss": run["train_loss"][1::2]}
    return run


@dataclass(frozen=True)
class Rule:
    """A stopping rule replayed on the recorded series of a run: one setting of a method."""

    method: str
    label: str
    make: Callable[[], StoppingRule]
    series: Callable[[dict], list]
    run: str = "all"  # "all": trained on all data; "split": 80 %, with a validation set
    candidate: bool = True  # a candidate default: validation-free and reading the run itself

    def stop(self, runs: dict[str, dict]) -> int:
        """The epoch (0-based) it stops at; the last one if it never does."""
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


def monitored(key: str) -> Callable[[dict], list[float]]:
    """The series of ``topology/<metric>/last_hidden``, as TopologicalEarlyStopping reads it."""
    _, name, block = key.split("/")
    assert block == "last_hidden", key
    return topology(name)


def logged(name: str) -> Callable[[dict], list[float]]:
    """A series the Recorder logged (``train_loss``, ``val_loss``)."""
    return lambda run: run[name]


def paired(*series: Callable[[dict], list[float]]) -> Callable[[dict], list[tuple]]:
    """One tuple of values per epoch, for an AllRule or AnyRule."""
    return lambda run: list(zip(*(s(run) for s in series), strict=True))


VAL_REFERENCE = "patience=3"
"""Validation-loss early stopping as Lightning's ``EarlyStopping`` defaults to it: the reference
under label noise."""


def reads(keys: str | tuple[str, ...]) -> Callable[[dict], list]:
    """The recorded series of the key(s) a named rule reads by default."""
    if isinstance(keys, str):
        return monitored(keys) if keys.startswith("topology/") else logged(keys)
    return paired(*(reads(key) for key in keys))


def named_rules() -> list[Rule]:
    """The callback's named rules at their library defaults, built by ``make_rule`` as the
    callback builds them (the functional rule needs a pass with the functional graph)."""
    out = []
    for name in RULES:
        if name == "functional":
            continue
        keys = make_rule(name)[1]
        default = " (the default)" if name == DEFAULT_RULE else ""
        out.append(
            Rule(
                f'TopologicalEarlyStopping(rule="{name}"){default}',
                "library defaults",
                named(name),
                reads(keys),
            )
        )
    return out


def rule_grid() -> list[Rule]:
    """Every method at every setting of its grid. A method is what leave-one-family-out chooses a
    setting of; the validation-free ones are the candidates for the default."""
    loss = logged("train_loss")
    e0 = monitored(scalar_key("E0_1_scaled", "last_hidden"))
    phdim = topology("PHdim")
    rules = named_rules()
    rules += [
        Rule("fixed budget", f"{e} epochs", lambda e=e: FixedBudget(e), loss, candidate=False)
        for e in (10, 20, 30, 40)
    ]
    rules += [
        Rule(
            "val_loss EarlyStopping (80 % of the data)",
            f"patience={p}",
            lambda p=p: PlateauRule(patience=p),
            logged("val_loss"),
            run="split",
            candidate=False,
        )
        for p in (3, 5, 10)
    ]
    plateaus = [(p, d) for p in (3, 5, 10) for d in (0.01, 0.02, 0.05)]
    rules += [
        Rule(
            "train_loss plateau",
            f"patience={p}, min_delta={d:.0%}",
            named("loss", patience=p, min_delta=d),
            loss,
        )
        for p, d in plateaus
    ]
    trends = [(w, p, r) for w in (3, 5) for p in (3, 5, 10) for r in (0.0, 0.5)]
    for name, series in (("E0_1_scaled", e0), ("PHdim", phdim)):
        rules += [
            Rule(
                f"trend: {name} stops moving its learned way",
                f"warmup={w}, patience={p}, ratio={r:g}",
                named("trend", warmup=w, patience=p, patience_ratio=r),
                series,
            )
            for w, p, r in trends
        ]
    rules += [
        Rule(
            "minimum of E0_1_scaled, time-scale-free patience",
            f"patience={p}, ratio={r:g}",
            named("minimum", patience=p, patience_ratio=r),
            e0,
        )
        for p in (5, 10)
        for r in (0.5, 1.0)
    ]
    rules += [
        Rule(
            "convergence: E0_1_scaled still",
            f"tol={t:.0%}, patience={p}",
            named("convergence", tol=t, patience=p),
            e0,
        )
        for t in (0.01, 0.02, 0.05)
        for p in (3, 5, 10)
    ]
    for p, d in plateaus:
        rules += [
            Rule(
                "train_loss plateau AND E0_1_scaled still",
                f"loss: patience={p}, min_delta={d:.0%}; E0: tol={t:.0%}, patience={q}",
                named("settled", loss_patience=p, loss_min_delta=d, tol=t, patience=q),
                paired(loss, e0),
            )
            for t in (0.01, 0.02)
            for q in (3, 5)
        ]
        rules += [
            Rule(
                "train_loss plateau OR E0_1_scaled turns",
                f"loss: patience={p}, min_delta={d:.0%}; E0: warmup=3, patience={q}",
                named("turn", loss_patience=p, loss_min_delta=d, warmup=3, patience=q),
                paired(loss, e0),
            )
            for q in (5, 10)
        ]
    return rules


def named(rule: str, **options: Any) -> Callable[[], StoppingRule]:
    """A named rule of the callback at other settings, built by ``make_rule`` as it builds them."""
    return lambda: make_rule(rule, **options)[0]


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


# ---------------------------------------------------------------------------------------- analysis

CLEAN_MEAN, CLEAN_WORST, NOISY_VS_VAL, SAVED = -0.5, -2.0, -0.5, 0.5
"""The issue's bar for a default, in every family: on clean labels a mean loss of at most 0.5 pt
and a worst run of at most 2 pt against training to the end; under label noise (each level), at
most 0.5 pt below validation-loss early stopping; and at least half the epochs the oracle saves."""


@dataclass
class Score:
    """One rule on the runs of one data family."""

    clean_mean: float  # test accuracy at the stop minus training to the end, clean labels (pt)
    clean_worst: float  # the worst clean run's (pt)
    noisy_vs_val: dict[float, float]  # minus val_loss ES (VAL_REFERENCE), per noise level (pt)
    noisy_vs_end: dict[float, float]  # minus training to the end, per noise level (pt)
    saved: float  # mean epochs saved over the mean epochs the oracle saves
    epochs: float  # mean epochs trained

    @property
    def deficit(self) -> float:
        """How far (pt) the accuracy bars are missed: 0 when all three hold."""
        return max(
            0.0,
            CLEAN_MEAN - self.clean_mean,
            CLEAN_WORST - self.clean_worst,
            *(NOISY_VS_VAL - v for v in self.noisy_vs_val.values()),
        )

    @property
    def meets(self) -> bool:
        return self.deficit == 0 and self.saved >= SAVED


def scores(studied: list[tuple[Setting, dict]], rules: list[Rule]) -> dict[tuple[str, str], Score]:
    """Every rule's score on every family, keyed by (rule label, family)."""
    reference = next(r for r in rules if r.run == "split" and r.label == VAL_REFERENCE)
    by_family: dict[str, list[dict]] = {}
    for setting, runs in studied:
        by_family.setdefault(setting.family, []).append({"setting": setting, **runs})
    out = {}
    for fam, members in by_family.items():
        end = np.array([m["all"]["test_acc"][-1] for m in members])
        noise = np.array([m["setting"].noise for m in members])
        oracle = np.array([oracle_epochs(m["all"]["test_acc"]) for m in members])
        val = np.array([m["split"]["test_acc"][reference.stop(m)] for m in members])
        for rule in rules:
            stops = np.array([rule.stop(m) for m in members])
            acc = np.array([m[rule.run]["test_acc"][stops[i]] for i, m in enumerate(members)])
            trained = stops + 1
            clean = noise == 0
            out[rule.method + " | " + rule.label, fam] = Score(
                clean_mean=100 * float((acc - end)[clean].mean()),
                clean_worst=100 * float((acc - end)[clean].min()),
                noisy_vs_val={
                    n: 100 * float((acc - val)[noise == n].mean()) for n in NOISES if n > 0
                },
                noisy_vs_end={
                    n: 100 * float((acc - end)[noise == n].mean()) for n in NOISES if n > 0
                },
                saved=float((MAX_EPOCHS - trained).mean() / max((MAX_EPOCHS - oracle).mean(), 1)),
                epochs=float(trained.mean()),
            )
    return out


def oracle_epochs(test_acc: list[float]) -> int:
    """Epochs to the earliest epoch within ORACLE_TOLERANCE of the final test accuracy."""
    acc = np.asarray(test_acc)
    return int(np.flatnonzero(acc >= acc[-1] - ORACLE_TOLERANCE)[0]) + 1


def choose(candidates: list[str], families: list[str], table: dict) -> str:
    """The candidate that best meets the bar on ``families``: the smallest worst-family deficit
    (the issue's "smallest worst-family loss" when no rule meets the bar), then the smallest
    deficit summed over the families, then the most saved in its worst family."""

    def key(name: str) -> tuple[float, float, float]:
        group = [table[name, f] for f in families]
        deficits = [s.deficit for s in group]
        return max(deficits), sum(deficits), -min(s.saved for s in group)

    return min(candidates, key=key)


def leave_one_out(rules: list[Rule], table: dict, families: list[str]) -> dict:
    """For each method, and for the choice among all validation-free candidates: the setting
    chosen on every family but one, scored on the family left out."""
    names = [r.method + " | " + r.label for r in rules]
    methods: dict[str, list[str]] = {}
    for rule, name in zip(rules, names, strict=True):
        methods.setdefault(rule.method, []).append(name)
    free = [n for r, n in zip(rules, names, strict=True) if r.candidate]
    out = {}
    for held in families:
        rest = [f for f in families if f != held]
        for method, members in methods.items():
            chosen = choose(members, rest, table)
            out[method, held] = (chosen, table[chosen, held])
        chosen = choose(free, rest, table)
        out["chosen default", held] = (chosen, table[chosen, held])
    return out


def report(studied: list[tuple[Setting, dict]], rules: list[Rule]) -> str:
    """The study's tables, as printed; returns the default chosen on every family."""
    table = scores(studied, rules)
    families = [f for f in FAMILIES if any(s.family == f for s, _ in studied)]
    loo = leave_one_out(rules, table, families)
    print(
        f"\n{len(studied)} settings; {MAX_EPOCHS} epochs; bar: clean mean >= {CLEAN_MEAN} pt, "
        f"worst run >= {CLEAN_WORST} pt vs the end; noisy >= {NOISY_VS_VAL} pt vs val_loss ES "
        f"({VAL_REFERENCE}); saved >= {SAVED:.0%} of the oracle's epochs"
    )
    converged(studied)
    print(
        "\n1. Leave one family out: each method's setting chosen on the other families, scored "
        "on the one left out\n   (clean Δ mean / worst vs the end; noisy Δ vs val_loss ES at "
        "20 % / 40 %; saved/oracle; epochs)\n"
    )
    for held in families:
        print(f"== {held} left out")
        for method in dict.fromkeys(k[0] for k in loo):
            name, s = loo[method, held]
            flag = "meets" if s.meets else f"misses by {s.deficit:.1f} pt" if s.deficit else ""
            print(
                f"   {method[:48]:48s} {s.clean_mean:+5.1f} {s.clean_worst:+6.1f}  "
                + " ".join(f"{v:+5.1f}" for v in s.noisy_vs_val.values())
                + f"  {s.saved:5.2f} {s.epochs:5.1f}  {flag:>16s}  [{name.split(' | ')[1]}]"
            )
    print(
        "\n2. References per family (mean over runs, pt of test accuracy against training to "
        "the end;\n   clean / 20 % / 40 % label noise)\n"
    )
    val = {r.label: r for r in rules if r.run == "split"}
    for fam in families:
        members = [runs for s, runs in studied if s.family == fam]
        oracle = np.mean([oracle_epochs(r["all"]["test_acc"]) for r in members])
        end = np.mean([r["all"]["test_acc"][-1] for r in members])
        s = table[val[VAL_REFERENCE].method + " | " + VAL_REFERENCE, fam]
        best = best_checkpoint(studied, fam, val[VAL_REFERENCE])
        print(
            f"   {fam:9s} end {100 * end:5.1f} %  oracle {oracle:4.1f} epochs  val_loss ES "
            f"{s.clean_mean:+5.1f} "
            + " ".join(f"{v:+5.1f}" for v in s.noisy_vs_end.values())
            + f" ({s.epochs:4.1f} epochs)  its best checkpoint "
            + " ".join(f"{v:+5.1f}" for v in best)
        )
    free = [r.method + " | " + r.label for r in rules if r.candidate]
    default = choose(free, families, table)
    print(f"\n3. Chosen on all {len(families)} families: {default}")
    for fam in families:
        s = table[default, fam]
        print(
            f"   {fam:9s} clean {s.clean_mean:+5.1f} / {s.clean_worst:+5.1f}, noisy vs val "
            + " ".join(f"{v:+5.1f}" for v in s.noisy_vs_val.values())
            + f", saved {s.saved:.2f}"
        )
    return default


def best_checkpoint(studied: list[tuple[Setting, dict]], fam: str, rule: Rule) -> list[float]:
    """val_loss ES restoring its best checkpoint, against training to the end (pt), per noise."""
    out = []
    for noise in NOISES:
        deltas = []
        for s, runs in studied:
            if s.family == fam and s.noise == noise:
                split, stop = runs["split"], rule.stop(runs)
                best = int(np.argmin(split["val_loss"][: stop + 1]))
                deltas.append(split["test_acc"][best] - runs["all"]["test_acc"][-1])
        out.append(100 * float(np.mean(deltas)))
    return out


def converged(studied: list[tuple[Setting, dict]]) -> None:
    """Whether max_epochs was long enough: the runs whose test accuracy still rose by more than
    1 pt between the means of epochs 41-50 and 51-60."""
    rising = [
        (s, 100 * (np.mean(r["all"]["test_acc"][-10:]) - np.mean(r["all"]["test_acc"][-20:-10])))
        for s, r in studied
    ]
    late = [(s, d) for s, d in rising if d > 1.0]
    print(
        f"still rising at the end (> 1 pt over the last 10 epochs): {len(late)} of "
        f"{len(studied)} runs"
    )
    for s, d in late:
        print(f"   {s.name}: {d:+.1f} pt")


def figure(studied: list[tuple[Setting, dict]], rule: Rule, path: str) -> None:
    """Per family (columns): test accuracy (top) and the scale-free H0 complexity of the last
    hidden block (bottom) against the epoch, for the MLP of seed 0 under Adam and SGD, clean and
    with 40 % label noise; the chosen default's stop marked on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [f for f in FAMILIES if any(s.family == f for s, _ in studied)]
    shown = {
        (s.family, s.optimizer, s.noise): runs
        for s, runs in studied
        if s.seed == 0
        and s.arch == "mlp"
        and s.optimizer in ("adam", "sgd")
        and s.noise in (0, 0.4)
    }
    fig, axes = plt.subplots(2, len(families), figsize=(3.1 * len(families), 5.6), sharex=True)
    colours = {"adam": "tab:blue", "sgd": "tab:orange"}
    e0 = topology("E0_1_scaled")
    for column, fam in enumerate(families):
        top, bottom = axes[0, column], axes[1, column]
        for (f, optimizer, noise), runs in sorted(shown.items()):
            if f != fam:
                continue
            run, stop = runs["all"], rule.stop(runs)
            epochs = np.arange(1, len(run["test_acc"]) + 1)
            style = {"color": colours[optimizer], "ls": "-" if noise == 0 else "--", "lw": 1.3}
            label = f"{optimizer}, {noise:.0%} noise"
            top.plot(epochs, 100 * np.array(run["test_acc"]), label=label, **style)
            bottom.plot(epochs, e0(run), **style)
            top.plot(
                stop + 1,
                100 * run["test_acc"][stop],
                "o",
                mfc="none",
                mew=1.6,
                ms=7,
                color=colours[optimizer],
            )
            bottom.plot(
                stop + 1, e0(run)[stop], "o", mfc="none", mew=1.6, ms=7, color=colours[optimizer]
            )
        top.set_title(fam, fontsize=10)
        bottom.set_xlabel("epoch")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test accuracy (%)")
    axes[1, 0].set_ylabel("E0_1_scaled, last hidden")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], marker="o", mfc="none", ls="", color="0.3"))
    labels.append(f"the default's stop ({rule.method.split(' (')[0]})")
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    print(f"\nfigure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--no-train", action="store_true", help="analyse the cached runs only")
    parser.add_argument(
        "--shard",
        default="0/1",
        help="i/k: train the i-th of k shards of the settings only (run k processes), then stop",
    )
    parser.add_argument("--figure", help="write the figure of the default's series here")
    args = parser.parse_args()
    index, count = map(int, args.shard.split("/"))
    kinds = ("all", "split")
    studied = run_all(args.seeds, kinds, not args.no_train, (index, count))
    if count > 1:
        return
    families = {setting.family for setting, _ in studied}
    if len(families) < 2:
        raise SystemExit(
            f"{len(studied)} settings cached in {CACHE}, from {len(families)} families: leaving "
            "one family out needs two or more. Train first (without --no-train)."
        )
    rules = rule_grid()
    default = report(studied, rules)
    if args.figure:
        chosen = next(r for r in rules if r.method + " | " + r.label == default)
        figure(studied, chosen, args.figure)


if __name__ == "__main__":
    main()
