"""``blocks="auto"`` on real architectures: the exact blocks each one's definition says it has.

Each model is built by its library's own constructor (torchvision, HuggingFace ``transformers``
from tiny configs, ``torch.nn`` recurrent layers), without downloading weights, and measured on a
few tiny inputs: every block must be found, hooked, and given a finite E0.
"""

import math
import warnings
from collections.abc import Callable
from typing import Any

import gudhi
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torchvision.models import (
    VisionTransformer,
    efficientnet_b0,
    mobilenet_v2,
    resnet18,
)
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.densenet import DenseNet
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2Model,
    LlamaConfig,
    LlamaModel,
)

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import TopologyMonitor
from topo_monitor.probing import candidate_blocks, measure


def gudhi_e0(points: np.ndarray) -> float:
    """Sum of the finite H0 deaths of the Vietoris–Rips filtration, by gudhi."""
    tree = gudhi.RipsComplex(points=points.astype(np.float64)).create_simplex_tree(max_dimension=1)
    tree.compute_persistence(min_persistence=-1)
    deaths = tree.persistence_intervals_in_dimension(0)[:, 1]
    return float(deaths[np.isfinite(deaths)].sum())


def measured_blocks(
    model: nn.Module,
    inputs: torch.Tensor,
    forward: Callable[[nn.Module, Any], Any] | None = None,
) -> list[str]:
    """Measure ``model`` with blocks="auto" on ``inputs`` (two classes); check every E0."""
    labels = torch.arange(len(inputs)) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no block may be skipped, never called, or NaN
        record = measure(model, (inputs, labels), forward=forward, metrics=("e0",))
    assert all(math.isfinite(v) and v > 0 for v in record.values["E0_1"]), record.values
    return record.blocks


def images(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def tokens(n: int = 6, length: int = 5) -> torch.Tensor:
    return torch.randint(0, 100, (n, length), generator=torch.Generator().manual_seed(0))


def hidden_states(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(input_ids=batch).last_hidden_state


# ---------------------------------------------------------------------------- torchvision


def test_resnet18_blocks_are_its_basic_blocks_not_its_stages():
    # layers=[2, 2, 2, 2]: the stages layer1..layer4 are plain nn.Sequential lists of blocks.
    expected = [f"layer{stage}.{i}" for stage in (1, 2, 3, 4) for i in (0, 1)]
    assert measured_blocks(resnet18(weights=None), images()) == [*expected, "output"]


def test_mobilenet_v2_blocks_are_its_inverted_residuals_with_first_and_last_conv():
    # features: a Conv2dNormActivation stem, 17 InvertedResidual blocks (t, c, n, s table:
    # 1+2+3+4+3+3+1), and a last Conv2dNormActivation: two of that class, so both are units.
    model = mobilenet_v2(weights=None, width_mult=0.25)
    expected = [f"features.{i}" for i in range(19)]
    assert [type(model.get_submodule(n)).__name__ for n in expected[1:-1]] == [
        "InvertedResidual"
    ] * 17
    assert measured_blocks(model, images()) == [*expected, "output"]


def test_efficientnet_b0_blocks_are_its_16_mbconvs_with_stem_and_head():
    # Stages of 1, 2, 2, 3, 3, 4, 1 MBConv blocks (the one-block stages included), between a
    # Conv2dNormActivation stem and head.
    depths = [1, 2, 2, 3, 3, 4, 1]
    mbconv = [f"features.{s}.{i}" for s, d in enumerate(depths, start=1) for i in range(d)]
    expected = ["features.0", *mbconv, "features.8"]
    model = efficientnet_b0(weights=None)
    assert {type(model.get_submodule(n)).__name__ for n in mbconv} == {"MBConv"}
    assert measured_blocks(model, images()) == [*expected, "output"]


def test_densenet121_blocks_are_its_dense_blocks_and_transitions():
    # densenet121's block_config (6, 12, 24, 16), narrower (growth 8, not 32): four dense
    # blocks, a transition after each but the last; the 58 dense layers inside are not blocks.
    model = DenseNet(growth_rate=8, block_config=(6, 12, 24, 16), num_init_features=16)
    expected = []
    for i in range(1, 5):
        expected.append(f"features.denseblock{i}")
        if i < 4:
            expected.append(f"features.transition{i}")
    assert measured_blocks(model, images()) == [*expected, "output"]


def test_convnext_blocks_are_its_cnblocks():
    # convnext_tiny's depths (3, 3, 9, 3) with narrow widths: stages at features 1, 3, 5, 7,
    # downsampling layers (plain Sequential of LayerNorm2d and Conv2d) between them.
    depths = (3, 3, 9, 3)
    widths = (8, 16, 32, 64)
    settings = [
        CNBlockConfig(w, widths[i + 1] if i < 3 else None, d)
        for i, (w, d) in enumerate(zip(widths, depths, strict=True))
    ]
    expected = [f"features.{2 * s + 1}.{i}" for s, d in enumerate(depths) for i in range(d)]
    assert measured_blocks(ConvNeXt(settings), images()) == [*expected, "output"]


def test_vision_transformer_blocks_are_its_encoder_layers():
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    )
    nn.init.normal_(model.heads.head.weight)  # zero at construction: a constant output
    expected = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    assert measured_blocks(model, images()) == [*expected, "output"]


# ---------------------------------------------------------------------------- HuggingFace


def test_bert_blocks_are_its_bert_layers():
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
    )
    blocks = measured_blocks(BertModel(config), tokens(), forward=hidden_states)
    assert blocks == ["encoder.layer.0", "encoder.layer.1", "output"]


def test_gpt2_blocks_are_its_gpt2_blocks():
    config = GPT2Config(
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=16,
        vocab_size=100,
        bos_token_id=0,
        eos_token_id=0,
    )
    blocks = measured_blocks(GPT2Model(config), tokens(), forward=hidden_states)
    assert blocks == ["h.0", "h.1", "output"]


def test_llama_blocks_are_its_decoder_layers():
    config = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=100,
    )
    blocks = measured_blocks(LlamaModel(config), tokens(), forward=hidden_states)
    assert blocks == ["layers.0", "layers.1", "output"]


# ---------------------------------------------------------------------------- recurrent


class SequenceClassifier(nn.Module):
    """Token embedding, a recurrent layer, and a linear head on its last step."""

    def __init__(self, rnn: nn.RNNBase, classes: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, rnn.input_size)
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size, classes)

    def sequence(self, batch: torch.Tensor) -> torch.Tensor:
        """The recurrent layer's output sequence, (B, T, H) whatever its layout."""
        x = self.embed(batch)
        if not self.rnn.batch_first:
            x = x.transpose(0, 1)
        out, _ = self.rnn(x)
        return out if self.rnn.batch_first else out.transpose(0, 1)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.head(self.sequence(batch)[:, -1])


@pytest.mark.parametrize(
    "make_rnn",
    [
        lambda: nn.LSTM(8, 12, num_layers=2, batch_first=True),
        lambda: nn.GRU(8, 12),  # the default (T, B, H) layout
        lambda: nn.RNN(8, 12, batch_first=True),
    ],
    ids=["lstm", "gru-sequence-first", "rnn"],
)
def test_recurrent_layer_is_a_block_measured_on_its_output_sequence(
    make_rnn: Callable[[], nn.RNNBase],
):
    torch.manual_seed(0)
    model = SequenceClassifier(make_rnn()).eval()
    x, labels = tokens(n=8), torch.arange(8) % 2
    assert candidate_blocks(model) == ["rnn"]
    record = measure(model, (x, labels), metrics=("e0",))
    assert record.blocks == ["rnn", "output"]
    # Independent truth: the output sequence (not h_n, not c_n), averaged over its steps.
    with torch.no_grad():
        cloud = model.sequence(x).mean(1).numpy()
    expected = np.mean([gudhi_e0(cloud[labels.numpy() == c]) for c in (0, 1)])
    assert record.values["E0_1"][0] == pytest.approx(expected, rel=1e-5)


class PackedClassifier(SequenceClassifier):
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        lengths = torch.tensor([batch.shape[1] - i % 2 for i in range(len(batch))])
        packed = pack_padded_sequence(
            self.embed(batch), lengths, batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.rnn(packed)
        return self.head(h[-1])


def test_recurrent_layer_on_packed_sequences_is_skipped_with_a_reason():
    model = PackedClassifier(nn.LSTM(8, 12, batch_first=True))
    with pytest.warns(UserWarning, match="block 'rnn' is not measured: .*PackedSequence"):
        record = measure(model, (tokens(n=8), torch.arange(8) % 2), metrics=("e0",))
    assert record.blocks == ["output"]


# ---------------------------------------------------------------------------- plain models


class FunctionalMLP(nn.Module):
    """Hidden layers with F.relu: no activation module to hook."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def test_mlp_with_functional_relu_blocks_are_its_hidden_linear_layers():
    # The last Linear is the head: its output is the model output, already the last block.
    model = FunctionalMLP()
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    assert measured_blocks(model, x) == ["fc1", "fc2", "output"]


def test_recurrent_layers_join_the_activations_of_a_plain_model():
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 8)
            self.rnn = nn.GRU(8, 8, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))

    assert candidate_blocks(Tagger()) == ["rnn", "mlp.1"]


# ---------------------------------------------------------------------------- fit start


class LogisticRegression(MLP):
    """One Linear layer: nothing but the output to monitor."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(8, 3)


def test_auto_without_hidden_blocks_warns_once_at_fit_start_naming_the_model(tmp_path):
    assert candidate_blocks(LogisticRegression()) == []
    monitor = TopologyMonitor(samples_per_class=10, metrics=("e0",), figures_every_n_epochs=None)
    trainer = quiet_trainer(
        max_epochs=2, callbacks=[monitor], logger=False, default_root_dir=tmp_path
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(LogisticRegression(), loader(blobs()))
    found = [str(w.message) for w in caught if "found no hidden block" in str(w.message)]
    assert len(found) == 1, found
    assert "in LogisticRegression" in found[0] and "blocks=[...]" in found[0]
    assert "'net'" in found[0]  # a name to start from
    assert monitor.block_names == ["output"]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monitor.setup(quiet_trainer(), MLP(), "fit")
    assert not [w for w in caught if "found no hidden block" in str(w.message)]
