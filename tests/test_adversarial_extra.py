"""torchattacks is the ``adversarial`` extra: without it the package imports and measures, and the
adversarial API says how to install it, before any training starts."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from topo_monitor import AdversarialTopologyMonitor, adversarial_topology


@pytest.fixture
def no_torchattacks(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # `import torchattacks` fails


def test_the_callback_names_the_extra_at_construction(no_torchattacks):
    with pytest.raises(ImportError, match=r"topo-monitor\[adversarial\]"):
        AdversarialTopologyMonitor()


def test_the_function_names_the_extra_before_any_work(no_torchattacks):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ImportError, match=r"topo-monitor\[adversarial\]"):
        adversarial_topology(model, torch.rand(6, 4), torch.tensor([0, 1] * 3))


def test_the_rest_of_the_package_works_without_torchattacks():
    code = (
        "import sys; sys.modules['torchattacks'] = None\n"
        "import torch; from torch import nn\n"
        "import topo_monitor as tm\n"
        "g = torch.Generator().manual_seed(0)\n"
        "x = torch.randn(60, 3, generator=g); y = torch.arange(60) % 2\n"
        "r = tm.measure(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)), (x, y))\n"
        "print(len(r.blocks), r.values['E0_1'][-1] > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "True"]
