"""Blocks, hooks, reductions and the probe set, checked against values worked out by hand."""

import copy
import random
import warnings

import gudhi
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset
from torchvision.models import resnet18

from helpers import reduce_output
from topo_monitor import TopologyMonitor
from topo_monitor.probing import (
    ProbeSet,
    candidate_blocks,
    measure,
    resolve_blocks,
)


def gudhi_e0(points: np.ndarray) -> float:
    """Sum of the finite H0 deaths of the Vietoris–Rips filtration, by gudhi."""
    tree = gudhi.RipsComplex(points=points.astype(np.float64)).create_simplex_tree(max_dimension=1)
    tree.compute_persistence(min_persistence=-1)
    deaths = tree.persistence_intervals_in_dimension(0)[:, 1]
    return float(deaths[np.isfinite(deaths)].sum())


def class_mean_e0(cloud: torch.Tensor, labels: torch.Tensor) -> float:
    cloud, labels = cloud.numpy(), labels.numpy()
    return float(np.mean([gudhi_e0(cloud[labels == c]) for c in np.unique(labels)]))


# ---------------------------------------------------------------------------- reduce_output


def test_gap_of_a_feature_map_is_the_spatial_mean():
    x = torch.randn(3, 5, 4, 6)
    out = reduce_output(x, "gap")
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, x.mean((2, 3)))


def test_gap_of_a_feature_map_by_hand():
    # One input, two channels, 2x2 positions: channel means 2.5 and 25.
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [30.0, 40.0]]]])
    torch.testing.assert_close(reduce_output(x, "gap"), torch.tensor([[2.5, 25.0]]))


def test_gap_of_a_sequence_averages_over_positions():
    x = torch.randn(2, 7, 5)  # (B, T, C), as batch-first transformers emit
    out = reduce_output(x, "gap")
    assert out.shape == (2, 5)
    torch.testing.assert_close(out, x.mean(1))


def test_gap_with_channel_dim_1_averages_conv1d_outputs_over_length():
    x = torch.randn(2, 5, 9)  # (B, C, L)
    out = reduce_output(x, "gap", channel_dim=1)
    assert out.shape == (2, 5)
    torch.testing.assert_close(out, x.mean(2))


def test_gap_of_a_5d_output_averages_every_spatial_dimension():
    x = torch.randn(2, 3, 4, 2, 5)
    torch.testing.assert_close(reduce_output(x, "gap"), x.mean((2, 3, 4)))


def test_top_l2_picks_the_position_of_largest_norm_per_input():
    x = 0.01 * torch.randn(2, 3, 2, 2)
    # Input 0: position (1, 0) has norm sqrt(27) ~ 5.2 although its largest entry is 3; position
    # (0, 1) has the largest entry (5) but norm 5. The l2 norm must decide, not the max entry.
    x[0, :, 1, 0] = torch.tensor([3.0, 3.0, 3.0])
    x[0, :, 0, 1] = torch.tensor([5.0, 0.0, 0.0])
    # Input 1: position (1, 1) wins, with a negative vector (norm, not sum).
    x[1, :, 1, 1] = torch.tensor([-4.0, -4.0, 0.0])
    x[1, :, 0, 0] = torch.tensor([1.0, 1.0, 1.0])
    out = reduce_output(x, "top_l2")
    assert out.shape == (2, 3)
    torch.testing.assert_close(out[0], torch.tensor([3.0, 3.0, 3.0]))
    torch.testing.assert_close(out[1], torch.tensor([-4.0, -4.0, 0.0]))


def test_top_l2_on_sequences_and_conv1d_outputs():
    x = torch.zeros(2, 4, 3)  # (B, T, C)
    x[0, 2] = torch.tensor([1.0, -2.0, 2.0])
    x[1, 0] = torch.tensor([0.5, 0.5, 0.5])
    torch.testing.assert_close(
        reduce_output(x, "top_l2"), torch.tensor([[1.0, -2.0, 2.0], [0.5, 0.5, 0.5]])
    )
    # The same data as (B, C, L): channels in dim 1.
    torch.testing.assert_close(
        reduce_output(x.transpose(1, 2), "top_l2", channel_dim=1),
        torch.tensor([[1.0, -2.0, 2.0], [0.5, 0.5, 0.5]]),
    )


def test_flatten_keeps_the_whole_output_per_input():
    x = torch.randn(3, 2, 4, 5)
    out = reduce_output(x, "flatten")
    assert out.shape == (3, 40)
    torch.testing.assert_close(out, x.reshape(3, -1))


@pytest.mark.parametrize("reduction", ["gap", "top_l2", "flatten"])
def test_dense_output_is_kept_as_it_is(reduction):
    x = torch.randn(4, 6)
    torch.testing.assert_close(reduce_output(x, reduction), x)


@pytest.mark.parametrize("reduction", ["gap", "top_l2", "flatten"])
@pytest.mark.parametrize("shape", [(4, 6), (4, 3, 5), (4, 3, 2, 2)])
def test_result_is_never_a_view_of_the_output(reduction, shape):
    x = torch.randn(*shape)
    out = reduce_output(x, reduction)
    before = out.clone()
    x.mul_(-3.0).add_(7.0)  # what a later ReLU(inplace=True) or `+=` would do
    torch.testing.assert_close(out, before, rtol=0, atol=0)


def test_result_is_float32_and_detached():
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    out = reduce_output(x, "gap")
    assert out.dtype == torch.float32
    assert not out.requires_grad
    torch.testing.assert_close(out, x.detach().float().mean(1))


@pytest.mark.parametrize("x", [torch.randn(5), torch.tensor(1.0)])
def test_output_without_a_batch_dimension_raises(x):
    with pytest.raises(ValueError, match="expected an output of shape"):
        reduce_output(x, "gap")


def test_unknown_reduction_raises():
    with pytest.raises(ValueError, match="reduction must be one of"):
        reduce_output(torch.randn(2, 3), "max")


# ---------------------------------------------------------------------------- candidate blocks


def test_resnet18_blocks_are_its_basic_blocks():
    expected = [f"layer{stage}.{i}" for stage in (1, 2, 3, 4) for i in (0, 1)]
    assert candidate_blocks(resnet18(weights=None)) == expected


def test_transformer_encoder_blocks_are_its_layers():
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False)
    assert candidate_blocks(encoder) == ["layers.0", "layers.1", "layers.2"]


def test_mlp_blocks_are_its_activations():
    mlp = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.GELU(), nn.Dropout(), nn.Linear(8, 2)
    )
    assert candidate_blocks(mlp) == ["1", "3"]


def test_blocks_nested_in_blocks_are_not_candidates():
    class InnerBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

    class OuterBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = InnerBlock()

    model = nn.Sequential(OuterBlock(), InnerBlock(), nn.ReLU())
    assert candidate_blocks(model) == ["0", "1"]


def test_units_are_the_outermost_of_a_repeated_class_counted_over_the_whole_model():
    class Inner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.ModuleList([Inner(), Inner()])

    class Single(nn.Module):  # one instance: not a repeated unit
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

    # The Inner units inside each Outer are not blocks of their own; the third Inner, outside,
    # is one (its class is repeated in the model, though once in its container).
    model = nn.Sequential(Single(), Outer(), Outer(), nn.Sequential(Inner()), nn.ReLU())
    assert candidate_blocks(model) == ["1", "2", "3.0"]


class Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(x))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(Layer(), Layer())
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(x))


class WithEMA(nn.Module):
    """The network again as an attribute, as an EMA copy, a distillation teacher or a BYOL
    target network is; only the first is called by forward."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Net()
        self.ema = copy.deepcopy(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_a_network_held_twice_as_attributes_is_not_a_unit_its_blocks_are():
    model = WithEMA()
    assert candidate_blocks(model) == [
        "net.layers.0",
        "net.layers.1",
        "ema.layers.0",
        "ema.layers.1",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the copy's blocks, never called, are dropped quietly
        record = measure(model, _probe(), metrics=("e0",))
    assert record.blocks == ["net.layers.0", "net.layers.1", "output"]


# ---------------------------------------------------------------------------- resolve_blocks


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))


def test_callable_returning_modules_maps_to_their_names():
    model = _mlp()
    assert resolve_blocks(model, lambda m: [m[3], m[1]]) == ["3", "1"]
    assert resolve_blocks(model, lambda m: ["0", m[2]]) == ["0", "2"]


def test_callable_returning_a_foreign_module_raises():
    with pytest.raises(ValueError, match="not a submodule"):
        resolve_blocks(_mlp(), lambda m: [nn.ReLU()])


def test_unknown_names_raise_and_are_named():
    with pytest.raises(ValueError, match=r"unknown block name\(s\) \['nope', 'also\.nope'\]"):
        resolve_blocks(_mlp(), ["1", "nope", "also.nope"])


def test_a_name_given_twice_raises_and_is_named():
    with pytest.raises(ValueError, match=r"block name\(s\) \['1'\] given more than once"):
        resolve_blocks(_mlp(), ["1", "3", "1"])
    with pytest.raises(ValueError, match=r"\['3'\] given more than once"):
        resolve_blocks(_mlp(), lambda m: [m[3], "1", "3"])  # a module and its name


def test_output_is_dropped_and_auto_is_candidate_blocks():
    model = _mlp()
    assert resolve_blocks(model, ["3", "output"]) == ["3"]
    assert resolve_blocks(model, "auto") == ["1", "3"]
    with pytest.raises(ValueError, match='blocks must be "auto"'):
        resolve_blocks(model, "all")


# ---------------------------------------------------------------------------- compute


class SharedLayer(nn.Module):
    """``shared`` is applied at two depths: blocks ``shared`` and ``shared#2``."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 6)
        self.shared = nn.Linear(6, 6)
        self.mid = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.shared(self.inp(x)))
        h = torch.relu(self.mid(h))
        return self.head(self.shared(h))


def _probe(n_per_class: int = 10, dim: int = 4, seed: int = 0) -> ProbeSet:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3 * n_per_class, dim, generator=g)
    y = torch.arange(3).repeat_interleave(n_per_class)
    return ProbeSet.from_tensors(x, y)


def test_module_called_twice_gives_two_blocks_in_execution_order():
    torch.manual_seed(0)
    model = SharedLayer()
    # Names given out of order, and batches of 7: per-call keys must restart every batch.
    monitor = TopologyMonitor(blocks=["mid", "shared"], metrics=("e0",), batch_size=7)
    monitor.probe = _probe()
    record = monitor.measure(model)
    assert record.blocks == ["shared", "mid", "shared#2", "output"]

    x, labels = monitor.probe.inputs, monitor.probe.labels
    with torch.no_grad():
        first = model.shared(model.inp(x))
        mid = model.mid(torch.tanh(first))
        second = model.shared(torch.relu(mid))
        output = model.head(second)
    assert class_mean_e0(first, labels) != pytest.approx(class_mean_e0(second, labels))
    for i, cloud in enumerate((first, mid, second, output)):
        assert record.values["E0_1"][i] == pytest.approx(class_mean_e0(cloud, labels), rel=1e-5)


class Unused(nn.Module):
    """``spare`` is defined but never called."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 6)
        self.spare = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.lin(x)))


def test_a_named_block_never_called_is_one_warning_naming_it():
    with pytest.warns(UserWarning) as caught:
        record = measure(Unused(), _probe(), blocks=["lin", "spare"], metrics=("e0",))
    assert [str(w.message) for w in caught] == [
        "topo_monitor: block(s) ['spare'] were never called during the probe forward pass and "
        "are not measured: the model's forward (in eval mode) does not use them; name modules "
        "it calls"
    ]
    assert record.blocks == ["lin", "output"]


def test_an_auto_block_never_called_is_dropped_quietly():
    # "auto" picks by structure (the hidden Linear layers here), not by what forward calls:
    # a module that runs only in training mode, such as an auxiliary head, is no mistake.
    assert candidate_blocks(Unused()) == ["lin", "spare"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = measure(Unused(), _probe(), metrics=("e0",))
    assert record.blocks == ["lin", "output"]


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.act = nn.ReLU()
        self.head = nn.Linear(8, 3)
        self.fail = False
        self.draw = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.drop(self.bn(self.lin(x))))
        if self.draw:  # a model that consumes the global streams even in eval mode
            torch.rand(1), np.random.rand(), random.random()  # noqa: NPY002
        if self.fail:
            raise RuntimeError("boom")
        return self.head(h)


def _modes(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def test_compute_restores_modes_random_state_and_hooks():
    torch.manual_seed(1)
    model = Mixed()
    model.train()
    model.drop.eval()  # a user froze one part
    modes = _modes(model)
    assert modes["drop"] is False and modes["bn"] is True and modes[""] is True
    running_mean = model.bn.running_mean.clone()

    seen = []

    def user_hook(module, args, output):
        seen.append((module.training, torch.is_grad_enabled()))

    user = model.act.register_forward_hook(user_hook)
    hooks_before = {name: dict(m._forward_hooks) for name, m in model.named_modules()}

    model.draw = True
    monitor = TopologyMonitor(blocks=["bn", "act"], metrics=("e0", "phdim"))
    monitor.probe = _probe(n_per_class=40)
    torch.manual_seed(123)
    np.random.seed(7)  # noqa: NPY002 (the global stream is what is checked)
    random.seed(9)
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()  # noqa: NPY002
    py_state = random.getstate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no block may be skipped or NaN here
        record = monitor.measure(model)
    assert record.blocks == ["bn", "act", "output"]

    # During the forward pass: eval mode, no gradients; BN statistics untouched.
    assert seen and all(s == (False, False) for s in seen)
    torch.testing.assert_close(model.bn.running_mean, running_mean, rtol=0, atol=0)
    # Afterwards: every module's own mode, grad mode, the random streams, and the hooks.
    assert _modes(model) == modes
    assert torch.is_grad_enabled()
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert random.getstate() == py_state
    assert {name: dict(m._forward_hooks) for name, m in model.named_modules()} == hooks_before
    user.remove()
    assert all(not m._forward_hooks for m in model.modules())


def test_compute_cleans_up_when_the_forward_pass_raises():
    model = Mixed()
    model.train()
    model.bn.eval()
    modes = _modes(model)
    model.fail = True
    monitor = TopologyMonitor(blocks=["lin", "bn"], metrics=("e0",))
    monitor.probe = _probe()
    with pytest.raises(RuntimeError, match="boom"):
        monitor.measure(model)
    assert _modes(model) == modes
    assert torch.is_grad_enabled()
    assert all(not m._forward_hooks for m in model.modules())


# ---------------------------------------------------------------------------- ProbeSet


def _tensor_dataset(counts=(30, 25, 40)) -> TensorDataset:
    """Item i has input [i, i]; classes interleaved, so their indices are not contiguous."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]
    x = torch.arange(len(labels), dtype=torch.float32).unsqueeze(1).repeat(1, 2)
    return TensorDataset(x, labels)


def _check_stratified(probe: ProbeSet, n_per_class: int, classes: int = 3) -> None:
    assert np.bincount(probe.labels.numpy(), minlength=classes).tolist() == [n_per_class] * classes
    assert len(np.unique(probe.indices)) == len(probe.indices)


def test_from_dataset_is_class_stratified_and_reproducible():
    data = _tensor_dataset()
    probe = ProbeSet.from_dataset(data, samples_per_class=10, seed=0)
    _check_stratified(probe, 10)
    assert probe.labels.dtype == torch.int64
    # Row k of the probe is item indices[k] of the dataset, with its own label.
    idx = torch.as_tensor(probe.indices)
    torch.testing.assert_close(probe.inputs, data.tensors[0][idx])
    torch.testing.assert_close(probe.labels, data.tensors[1][idx])

    again = ProbeSet.from_dataset(data, samples_per_class=10, seed=0)
    np.testing.assert_array_equal(again.indices, probe.indices)
    other = ProbeSet.from_dataset(data, samples_per_class=10, seed=1)
    _check_stratified(other, 10)
    assert not np.array_equal(other.indices, probe.indices)


def test_from_dataset_does_not_touch_the_global_random_streams():
    torch.manual_seed(5)
    np.random.seed(5)  # noqa: NPY002
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    ProbeSet.from_dataset(_tensor_dataset(), samples_per_class=10, seed=0)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])  # noqa: NPY002


def test_small_class_warns_and_is_taken_whole():
    data = _tensor_dataset(counts=(30, 25, 4))
    with pytest.warns(UserWarning, match=r"classes 2 \(4\) have fewer than samples_per_class=10"):
        probe = ProbeSet.from_dataset(data, samples_per_class=10, seed=0)
    assert np.bincount(probe.labels.numpy()).tolist() == [10, 10, 4]
    members = np.flatnonzero(data.tensors[1].numpy() == 2)
    assert sorted(probe.indices[probe.labels.numpy() == 2]) == sorted(members)


def test_from_dataset_of_a_subset_uses_subset_positions():
    base = _tensor_dataset()
    positions = np.random.default_rng(0).permutation(len(base))[:60]
    subset = Subset(base, positions.tolist())
    probe = ProbeSet.from_dataset(subset, samples_per_class=5, seed=0)
    _check_stratified(probe, 5)
    assert probe.indices.max() < len(subset)
    in_base = torch.as_tensor(positions[probe.indices])
    torch.testing.assert_close(probe.inputs, base.tensors[0][in_base])
    torch.testing.assert_close(probe.labels, base.tensors[1][in_base])


class FakeVision(Dataset):
    """torchvision style: ``targets`` is a list, items are (image, int); counts item reads."""

    def __init__(self, counts=(20, 20, 20)) -> None:
        self.targets = [c for c, n in enumerate(counts) for _ in range(n)]
        random.Random(4).shuffle(self.targets)
        self.data = torch.randn(len(self.targets), 1, 3, 3, generator=torch.Generator())
        self.reads = 0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        self.reads += 1
        return self.data[i], self.targets[i]


def test_from_dataset_reads_targets_without_indexing_items():
    data = FakeVision()
    probe = ProbeSet.from_dataset(data, samples_per_class=4, seed=0)
    _check_stratified(probe, 4)
    assert data.reads == len(probe) == 12  # only the chosen items, not the 60 to read labels
    torch.testing.assert_close(probe.inputs, data.data[torch.as_tensor(probe.indices)])
    assert probe.labels.tolist() == [data.targets[i] for i in probe.indices]


class DictItems(Dataset):
    def __init__(self, keys=("image", "label")) -> None:
        self.keys = keys
        self.x = torch.randn(30, 5)
        self.y = torch.arange(3).repeat(10)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return {self.keys[0]: self.x[i], self.keys[1]: int(self.y[i]), "id": f"item{i}"}


def test_from_dataset_of_dict_items():
    data = DictItems()
    probe = ProbeSet.from_dataset(data, samples_per_class=3, seed=0)
    _check_stratified(probe, 3)
    idx = torch.as_tensor(probe.indices)
    torch.testing.assert_close(probe.inputs, data.x[idx])
    torch.testing.assert_close(probe.labels, data.y[idx])


def test_unknown_item_format_raises_and_points_to_unpack():
    data = DictItems(keys=("features", "class_id"))
    with pytest.raises(ValueError, match="unpack="):
        ProbeSet.from_dataset(data, samples_per_class=3)
    probe = ProbeSet.from_dataset(
        data, samples_per_class=3, unpack=lambda item: (item["features"], item["class_id"])
    )
    _check_stratified(probe, 3)
    torch.testing.assert_close(probe.inputs, data.x[torch.as_tensor(probe.indices)])


def test_batches_cover_the_probe_in_order():
    probe = _probe(n_per_class=10)
    parts = list(probe.batches(7))
    assert [len(p) for p in parts] == [7, 7, 7, 7, 2]
    torch.testing.assert_close(torch.cat(parts), probe.inputs)
