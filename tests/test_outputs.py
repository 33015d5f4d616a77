"""Outputs users' models return: nested (padded) sequences, dicts and HuggingFace ModelOutputs."""

import warnings

import pytest
import torch
from torch import nn

from helpers import reduce_output
from topo_monitor import ProbeSet, h0_death_times, measure
from topo_monitor.probing.baselines import mean_margin


class MaskedEncoder(nn.Module):
    """A transformer over padded sequences: its layers emit nested tensors in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(4, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x), src_key_padding_mask=mask)
        valid = (~mask).unsqueeze(-1)
        return self.head((h * valid).sum(1) / valid.sum(1))


def test_nested_sequences_are_reduced_over_their_valid_positions():
    parts = [torch.randn(n, 5) for n in (2, 7, 4)]
    nested = torch.nested.nested_tensor(parts)
    expected = torch.stack([p.mean(0) for p in parts])
    assert torch.allclose(reduce_output(nested, "gap"), expected)
    top = reduce_output(nested, "top_l2")
    assert torch.equal(top[1], parts[1][parts[1].norm(dim=1).argmax()])
    with pytest.raises(ValueError, match="different lengths"):
        reduce_output(nested, "flatten")


def test_a_padding_masked_transformer_is_measured_every_layer():
    model = MaskedEncoder().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 6, 4, generator=g)
    lengths = torch.randint(2, 7, (60,), generator=g)
    mask = torch.arange(6)[None] >= lengths[:, None]
    labels = torch.arange(60) % 3
    nested = []
    hook = model.encoder.layers[0].register_forward_hook(
        lambda m, a, out: nested.append(out.is_nested)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's prototype notice on nested tensors
        warnings.filterwarnings("error", message="topo_monitor.*not measured")
        record = measure(
            model,
            ProbeSet((x, mask), labels),
            blocks=["encoder.layers.0", "encoder.layers.1"],
            forward=lambda m, batch: m(*batch),
            metrics=("e0",),
        )
    hook.remove()
    assert nested[0], "the check needs the nested-tensor fast path"

    # Independent truth: the padded outputs of the slow path, averaged over valid positions.
    padded = {}
    hooks = [
        model.encoder.layers[i].register_forward_hook(
            lambda m, a, out, i=i: padded.__setitem__(i, out)
        )
        for i in (0, 1)
    ]
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            model(x, mask)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
        for h in hooks:
            h.remove()
    valid = (~mask).unsqueeze(-1).float()
    for i in (0, 1):
        cloud = (padded[i] * valid).sum(1) / valid.sum(1)
        e0 = [float(h0_death_times(cloud[labels == c]).sum()) for c in range(3)]
        assert record.values["E0_1"][i] == pytest.approx(sum(e0) / 3, rel=1e-4)


class DictModel(nn.Module):
    """An MLP returning a dict, as many research models do."""

    def __init__(self, keys: tuple[str, str]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)
        self.keys = keys

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(x)
        return dict(zip(self.keys, (features, self.head(features)), strict=True))


def test_dict_outputs_are_read_at_their_logits():
    x, y = torch.randn(60, 8), torch.arange(60) % 3
    model = DictModel(("features", "logits"))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="topo_monitor.*without 'logits'")
        record = measure(model, (x, y), samples_per_class=20, metrics=("e0",))
    with torch.no_grad():
        logits = model(x)["logits"]
    assert record.extras["margin"] == pytest.approx(mean_margin(logits, y))
    plain = measure(nn.Sequential(model.body, model.head), (x, y), metrics=("e0",))
    assert record.values["E0_1"][-1] == pytest.approx(plain.values["E0_1"][-1])


def test_a_huggingface_model_output_is_read_at_its_logits():
    from transformers.modeling_outputs import SequenceClassifierOutput

    class HFStyle(DictModel):
        def forward(self, x):
            features = self.body(x)
            return SequenceClassifierOutput(logits=self.head(features), hidden_states=(features,))

    x, y = torch.randn(60, 8), torch.arange(60) % 3
    model = HFStyle(("unused", "unused"))
    record = measure(model, (x, y), metrics=("e0",))
    with torch.no_grad():
        assert record.extras["margin"] == pytest.approx(mean_margin(model(x).logits, y))


def test_a_dict_without_logits_warns_once_naming_the_key_it_uses():
    x, y = torch.randn(60, 8), torch.arange(60) % 3
    model = DictModel(("scores", "aux"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):  # three epochs: one warning
            measure(model, (x, y), metrics=("e0",))
    named = [str(w.message) for w in caught if "without 'logits'" in str(w.message)]
    assert len(named) == 1 and "'scores'" in named[0] and "DictModel" in named[0]
