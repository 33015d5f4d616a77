"""Streaming training data (an IterableDataset): the probe is drawn from the first batches of the
training loader at fit start, and training is untouched by it."""

import logging

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from helpers import MLP, quiet_trainer
from topo_monitor import TopologyMonitor


class Stream(IterableDataset):
    """Blob items drawn as they are read, with the global torch generator (as augmentations do):
    a probe that consumed it without care would change the training data."""

    def __init__(self, n: int = 240, random: bool = True) -> None:
        self.n, self.random = n, random
        self.centres = 3 * torch.randn(3, 8, generator=torch.Generator().manual_seed(0))

    def item(self, i: int) -> torch.Tensor:
        noise = torch.randn(8) if self.random else torch.full((8,), i / self.n)
        return self.centres[i % 3] + noise

    def __iter__(self):
        for i in range(self.n):
            yield self.item(i), i % 3


def fit(callbacks, stream):
    pl.seed_everything(0)
    model = MLP()
    trainer = quiet_trainer(max_epochs=2, callbacks=callbacks, logger=False)
    trainer.fit(model, DataLoader(stream, batch_size=16))
    return model


def test_the_probe_is_the_first_items_of_each_class_of_the_stream(caplog):
    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0",))
    stream = Stream(random=False)
    with caplog.at_level(logging.INFO):
        fit([monitor], stream)
    # 20 of each class: the first 60 items (classes alternate), in stream order.
    assert monitor.probe.labels.tolist() == [i % 3 for i in range(60)]
    assert torch.equal(monitor.probe.inputs, torch.stack([stream.item(i) for i in range(60)]))
    lines = [r.getMessage() for r in caplog.records if "training stream" in r.getMessage()]
    assert lines == [
        "TopologyMonitor: probe drawn from the training stream: 60 of the first 64 items, "
        "3 class(es)"
    ]
    assert [r.epoch for r in monitor.history] == [0, 1]


def test_drawing_the_probe_from_the_stream_changes_no_weight():
    without = fit([], Stream())
    with_monitor = fit([TopologyMonitor(samples_per_class=20, metrics=("e0",))], Stream())
    for (name, a), (_, b) in zip(
        without.state_dict().items(), with_monitor.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
