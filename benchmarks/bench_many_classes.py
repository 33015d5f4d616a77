"""The monitor's cost at library defaults on a 1000-class workload, against a training epoch.

ImageNet-shaped labels: 1000 classes x 20 images (3 x 32 x 32, random), an MLP whose training epoch
takes >= 10 s on 2 CPU cores. The monitor runs at its defaults (``TopologyMonitor()``:
samples_per_class=300, max_probe_inputs=3000, metrics e0/phdim/sw): its probe draws 150 classes.
Timed side by side in one process: the median of ``--epochs`` training epochs (a Trainer without
the monitor) and of ``--repeats`` monitored checks (the probe pass and topology, then the
loggers' writes), the probe draw once. Prints the ratio the issue targets (<= 25 %).

    python benchmarks/bench_many_classes.py [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from topo_monitor import ProbeSet, TopologyMonitor, measure
from topo_monitor.reporting.writer import TopologyWriter


class Classifier(pl.LightningModule):
    def __init__(self, classes: int = 1000, width: int = 2048) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * 32 * 32, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    g = torch.Generator().manual_seed(0)
    y = torch.arange(args.classes).repeat_interleave(args.per_class)
    data = TensorDataset(torch.rand(len(y), 3, 32, 32, generator=g), y)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f}; {args.classes} classes x {args.per_class} images"
    )
    pl.seed_everything(0, verbose=False)
    model = Classifier(args.classes)
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as logdir:
        trainer = pl.Trainer(
            max_epochs=args.epochs,
            callbacks=[timer],
            logger=TensorBoardLogger(logdir, name="many"),
            accelerator="cpu",
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        trainer.fit(model, DataLoader(data, batch_size=128, shuffle=True))
        epoch = statistics.median(timer.seconds)

        monitor = TopologyMonitor()  # the library defaults
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the budget's note, short classes
            probe = ProbeSet.from_dataset(
                data, monitor.samples_per_class, monitor.seed, max_inputs=monitor.max_probe_inputs
            )
        draw = time.perf_counter() - start
        writer, history, checks = TopologyWriter(), [], []
        for check in range(args.repeats):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                record = measure(model, probe, **monitor.measure_options, epoch=check)
            history.append(record)
            writer.write(trainer.loggers, history, trainer.log_dir)
            checks.append(time.perf_counter() - start)
        check = statistics.median(checks)
    stages = ", ".join(f"{k} {v:.2f}" for k, v in record.timings.items())
    print(f"training epoch (median of {args.epochs}): {epoch:.2f} s")
    print(
        f"monitored check (median of {args.repeats}): {check:.2f} s on {len(probe)} probe "
        f"inputs of {len(probe.classes)} classes, {len(record.blocks)} blocks ({stages})"
    )
    print(f"probe draw (once per fit): {draw:.2f} s")
    print(f"monitor / training epoch: {check / epoch:.1%} (target <= 25 %)")


if __name__ == "__main__":
    main()
