"""AdversarialTopologyMonitor inside a real Trainer.fit on digit images."""

import warnings

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchattacks
from pytorch_lightning.loggers import TensorBoardLogger
from sklearn.datasets import load_digits
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import quiet_trainer
from topo_monitor import AdversarialTopologyMonitor


class DigitsMLP(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10)
        )

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def digits_loader() -> DataLoader:
    digits = load_digits()
    x = torch.tensor(digits.images[:400] / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target[:400])
    return DataLoader(TensorDataset(x, y), batch_size=50, shuffle=True)


def fit(tmp_path, callbacks, name):
    pl.seed_everything(7)
    model = DigitsMLP()
    logger = TensorBoardLogger(tmp_path, name=name)
    quiet_trainer(max_epochs=2, callbacks=callbacks, logger=logger).fit(model, digits_loader())
    return model, logger


def test_logs_success_rates_and_figures_without_changing_training(tmp_path):
    monitor = AdversarialTopologyMonitor(
        samples_per_class=8,
        attacks=("FGSM",),
        eps=(0.0, 0.1, 0.3),
        every_n_epochs=1,
        homology_dims=(0,),
    )
    model, logger = fit(tmp_path, [monitor], "adv")
    plain, _ = fit(tmp_path, [], "plain")
    for key, value in plain.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key

    assert [h["epoch"] for h in monitor.history] == [0, 1]
    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    success = events.Scalars("adversarial/FGSM/success_rate/eps=0.3")
    assert [e.step for e in success] == [0, 1]
    clean = events.Scalars("adversarial/FGSM/success_rate/eps=0")
    assert all(e.value == 0 for e in clean)
    assert success[-1].value >= events.Scalars("adversarial/FGSM/success_rate/eps=0.1")[-1].value
    assert {"adversarial/FGSM/depth_E0_1_scaled", "adversarial/curves"} <= set(
        events.Tags()["images"]
    )
    blocks = {r["block"] for r in monitor.history[-1]["rows"]}
    assert blocks == {"input", "net.2", "output"}


def test_sharded_strategies_are_refused_at_fit_start_and_ddp_is_not():
    # The attacks run on rank 0 alone: under FSDP2 the other ranks would wait for it forever.
    from pytorch_lightning.strategies import ModelParallelStrategy

    monitor = AdversarialTopologyMonitor()
    options = dict(accelerator="cpu", devices=2, logger=False, enable_progress_bar=False)
    sharded = pl.Trainer(strategy=ModelParallelStrategy(2, 1), **options)
    with pytest.raises(ValueError, match="ModelParallelStrategy with 2 processes"):
        monitor.setup(sharded, nn.Linear(2, 2), "fit")
    monitor.setup(pl.Trainer(strategy="ddp", **options), nn.Linear(2, 2), "fit")
    monitor.setup(sharded, nn.Linear(2, 2), "validate")  # only training runs the attacks


def test_bad_attacks_are_refused_at_construction():
    with pytest.raises(ValueError, match="unknown attack 'PDG'"):
        AdversarialTopologyMonitor(attacks=("FGSM", "PDG"))
    with pytest.raises(TypeError, match="torchattacks classes or instances"):
        AdversarialTopologyMonitor(attacks=(nn.Linear,))
    with pytest.raises(ValueError, match="non-empty"):
        AdversarialTopologyMonitor(attacks=())


class Failing(torchattacks.attack.Attack):
    """An attack that fails the same way at every check, as an out-of-memory attack would."""

    def __init__(self, model, eps=0.1):
        super().__init__("Failing", model)
        self.eps = eps

    def forward(self, images, labels):
        raise RuntimeError("attack failed on purpose")


def test_a_failing_attack_warns_once_per_fit_and_training_goes_on(tmp_path):
    monitor = AdversarialTopologyMonitor(
        samples_per_class=4, attacks=(Failing,), eps=(0.1,), every_n_epochs=1
    )
    for _ in range(2):  # the second fit is told again
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pl.seed_everything(7)
            trainer = quiet_trainer(max_epochs=3, callbacks=[monitor], logger=False)
            trainer.fit(DigitsMLP(), digits_loader())
        said = [str(w.message) for w in caught if "AdversarialTopologyMonitor" in str(w.message)]
        assert len(said) == 1, said
        assert "epoch 0 skipped: RuntimeError: attack failed on purpose" in said[0]
        assert trainer.current_epoch == 3 and monitor.history == []
