"""adversarial_topology on a small digits classifier trained in the test."""

import gudhi
import numpy as np
import pytest
import torch
import torchattacks
from sklearn.datasets import load_digits
from torch import nn

from topo_monitor.analysis.adversarial import adversarial_topology, macro_f1


@pytest.fixture(scope="module")
def digits_model():
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.train()  # left in training mode on purpose: the analysis must give it back so
    idx = torch.cat([torch.nonzero(y == c).flatten()[:20] for c in range(10)])
    return model, x[idx], y[idx]  # 20 images per class


def gudhi_e0(points: np.ndarray) -> float:
    tree = gudhi.RipsComplex(points=points.astype(np.float64)).create_simplex_tree(max_dimension=1)
    tree.compute_persistence(min_persistence=-1)
    deaths = tree.persistence_intervals_in_dimension(0)[:, 1]
    return float(deaths[np.isfinite(deaths)].sum())


def test_fgsm_success_grows_with_eps_and_blocks_match_gudhi(digits_model):
    model, x, y = digits_model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    eps = (0.0, 0.05, 0.1, 0.2, 0.4)
    table = adversarial_topology(model, x, y, attacks=("FGSM",), eps=eps, homology_dims=(0,))
    success = table.column("success_rate", attack="FGSM", block="input")
    assert success[0] == 0.0
    assert np.all(np.diff(success) >= 0) and success[-1] > 0.9
    accuracy = table.column("accuracy", attack="FGSM", block="input")
    assert accuracy[-1] < accuracy[0]

    # Independent truth: make the same FGSM examples, hook the first hidden ReLU, ask gudhi.
    model.eval()
    adversarial = torchattacks.FGSM(model, eps=0.1)(x, y)
    captured = {}
    handle = model[2].register_forward_hook(lambda m, a, out: captured.setdefault("relu", out))
    with torch.no_grad():
        model(adversarial)
    handle.remove()
    model.train()
    cloud = captured["relu"].numpy()
    expected = np.mean([gudhi_e0(cloud[y.numpy() == c]) for c in range(10)])
    (row,) = table.select(attack="FGSM", eps=0.1, block="2")
    assert row["E0_1"] == pytest.approx(expected, rel=1e-5)
    inputs = adversarial.reshape(len(x), -1).numpy()
    expected_input = np.mean([gudhi_e0(inputs[y.numpy() == c]) for c in range(10)])
    (row,) = table.select(attack="FGSM", eps=0.1, block="input")
    assert row["E0_1"] == pytest.approx(expected_input, rel=1e-5)

    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_noise_raises_input_space_phdim(digits_model):
    # A PGD instance keeps its own small step (2/255): at a large budget its uniform random start
    # dominates, i.e. the examples are the inputs plus noise, and noise raises the dimension.
    model, x, y = digits_model
    attack = torchattacks.PGD(model, alpha=2 / 255, steps=2, random_start=True)
    table = adversarial_topology(
        model, x, y, attacks=(attack,), eps=(0.0, 0.1, 0.2), homology_dims=(0,), per_class=False
    )
    phdim = table.column("PHdim", block="input")  # measured: about 5.2, 5.8, 7.5
    assert np.all(np.diff(phdim) > 0)
    assert phdim[-1] > phdim[0] + 1


def test_h1_columns_and_csv(digits_model, tmp_path):
    model, x, y = digits_model
    table = adversarial_topology(model, x, y, attacks=("MIFGSM",), eps=(0.0, 0.1))
    assert {"E1_1", "E1_mean_lifespan", "E0_mean_lifespan", "macro_f1"} <= set(table.columns)
    assert table.timings["attack"] > 0 and table.timings["topology"] > 0
    table.to_csv(tmp_path / "adv.csv")
    lines = (tmp_path / "adv.csv").read_text().splitlines()
    assert len(lines) == 1 + len(table.rows)
    assert lines[0].startswith("attack,eps,success_rate")


def test_normalized_inputs_with_mean_and_std(digits_model):
    model, x, y = digits_model
    mean, std = 0.3, 0.4
    normalized_model = nn.Sequential(nn.Identity(), model)  # expects normalized inputs below
    wrapped = _Denormalize(normalized_model, mean, std)
    plain = adversarial_topology(model, x, y, attacks=("FGSM",), eps=(0.1,), homology_dims=(0,))
    table = adversarial_topology(
        wrapped,
        (x - mean) / std,
        y,
        attacks=("FGSM",),
        eps=(0.1,),
        homology_dims=(0,),
        mean=[mean],
        std=[std],
        blocks=["model.1.2"],
    )
    (a,) = plain.select(block="input")
    (b,) = table.select(block="input")
    assert b["success_rate"] == pytest.approx(a["success_rate"])
    assert b["E0_1"] == pytest.approx(a["E0_1"], rel=1e-4)


class _Denormalize(nn.Module):
    """A model that takes normalized inputs and maps them back before the digits classifier."""

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.model, self.mean, self.std = model, mean, std

    def forward(self, x):
        return self.model(x * self.std + self.mean)


def test_clear_errors(digits_model):
    model, x, y = digits_model
    with pytest.raises(ValueError, match="unknown attack 'DeepFool2'"):
        adversarial_topology(model, x, y, attacks=("DeepFool2",), eps=(0.1,))
    with pytest.raises(TypeError, match="torchattacks classes or instances, got <class 'int'>"):
        adversarial_topology(model, x, y, attacks=("FGSM", int), eps=(0.1,))
    with pytest.raises(ValueError, match="non-empty sequence of attacks, got 'PGD'"):
        adversarial_topology(model, x, y, attacks="PGD", eps=(0.1,))
    with pytest.raises(ValueError, match=r"outside \[0, 1\].*mean= and std="):
        adversarial_topology(model, (x - 0.5) / 0.2, y, eps=(0.1,))


def test_macro_f1_closed_form():
    labels = np.array([0, 0, 1, 1])
    predicted = np.array([0, 1, 1, 1])
    # class 0: tp 1, fn 1 -> 2/3; class 1: tp 2, fp 1 -> 4/5
    assert macro_f1(predicted, labels) == pytest.approx((2 / 3 + 4 / 5) / 2)
