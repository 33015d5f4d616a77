"""torch.compile'd models: block names as the user wrote them (no ``_orig_mod.``), hooks that fire
inside the compiled forward, and the same record as the eager model.

The tests use dynamo's ``"eager"`` backend: the default (inductor) compiles C++ on this CPU for
~45 s, and was checked by hand to give the same names and values.
"""

import pytest
import torch
from torch import nn

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import TopologyMonitor, measure


class Wrapper(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


@pytest.mark.parametrize("where", ["submodule", "whole model"])
def test_a_compiled_model_is_measured_under_the_names_the_user_wrote(where):
    g = torch.Generator().manual_seed(0)
    probe = (torch.randn(90, 8, generator=g), torch.arange(90) % 3)
    eager = measure(Wrapper(_net()), probe, metrics=("e0",))
    net = _net()
    model = (
        Wrapper(torch.compile(net, backend="eager"))
        if where == "submodule"
        else torch.compile(Wrapper(net), backend="eager")
    )
    compiled = measure(model, probe, metrics=("e0",))
    assert compiled.blocks == eager.blocks == ["net.1", "net.3", "output"]
    for metric, values in eager.values.items():
        assert compiled.values[metric] == pytest.approx(values, rel=1e-6)
    # Names the user wrote select the blocks too.
    named = measure(model, probe, metrics=("e0",), blocks=["net.3"])
    assert named.blocks == ["net.3", "output"]


def test_a_lightning_module_with_a_compiled_submodule_in_a_trainer():
    model = MLP()
    model.net = torch.compile(model.net, backend="eager")
    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0",))
    quiet_trainer(max_epochs=1, callbacks=[monitor], logger=False).fit(model, loader(blobs()))
    assert monitor.block_names == ["net.2", "net.5", "output"]
