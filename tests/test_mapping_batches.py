"""HuggingFace-style batches: dataset items ``{"input_ids", "attention_mask", "labels"}``.

Every input field is kept (not only ``input_ids``), token sequences of different lengths are
padded with ``pad_value`` and masked, the model is called ``model(**fields)``, and sequence
outputs are reduced over the positions the mask marks: the record equals one computed from every
sequence run alone, unpadded.
"""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
)

from helpers import quiet_trainer
from topo_monitor import TopologyMonitor, measure
from topo_monitor.probing import ProbeSet, SummaryConfig, summarize
from topo_monitor.probing.hooks import collect_clouds, preserved_state
from topo_monitor.probing.reduction import Reducer

PAD = 0


class Tokens(Dataset):
    """Sequences of 3 to 12 tokens whose class decides which tokens they draw."""

    def __init__(self, n: int = 60, labelled: bool = True, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            label = i % 3
            length = int(torch.randint(3, 13, (1,), generator=g))
            ids = torch.randint(1 + 10 * label, 11 + 10 * label, (length,), generator=g)
            item = {"input_ids": ids, "attention_mask": torch.ones(length, dtype=torch.long)}
            if labelled:
                item["labels"] = label
            self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def bert() -> nn.Module:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
    )
    return BertForSequenceClassification(config).eval()


def gpt2() -> nn.Module:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=40,
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=16,
        num_labels=3,
        pad_token_id=PAD,
    )
    return GPT2ForSequenceClassification(config).eval()


def test_mapping_items_keep_every_field_and_are_padded_and_masked():
    probe = ProbeSet.from_dataset(Tokens(), samples_per_class=5, pad_value=PAD)
    assert set(probe.inputs) == {"input_ids", "attention_mask"}
    lengths = probe.inputs["attention_mask"].sum(dim=1)
    for row, item in zip(range(len(probe)), probe.indices, strict=True):
        ids = Tokens()[int(item)]["input_ids"]
        assert int(lengths[row]) == len(ids)
        assert torch.equal(probe.inputs["input_ids"][row, : len(ids)], ids)
        assert (probe.inputs["input_ids"][row, len(ids) :] == PAD).all()


@pytest.mark.parametrize("build", [bert, gpt2], ids=["bert", "gpt2"])
def test_a_padded_probe_gives_the_record_of_its_unpadded_sequences(build):
    model = build()
    dataset = Tokens()
    record = measure(model, dataset, samples_per_class=20, metrics=("e0",), batch_size=16)
    probe = ProbeSet.from_dataset(dataset, 20)

    # Independent: every sequence alone (no pad, no mask), the mean over its own tokens.
    def alone(i: int) -> dict:
        item = dataset[int(probe.indices[i])]
        return {k: v[None] for k, v in item.items() if k != "labels"}

    with preserved_state(model):
        clouds, _ = collect_clouds(
            model,
            (alone(i) for i in range(len(probe))),
            record.blocks[:-1],
            Reducer("gap"),
        )
    expected = summarize(clouds, probe.labels, SummaryConfig(metrics=("e0",)))
    assert record.blocks == expected.blocks
    for metric, values in expected.values.items():
        assert record.values[metric] == pytest.approx(values, rel=1e-4), metric

    # Pads in the mean (a probe without its mask) would change the clouds: the test can fail.
    ids_only = ProbeSet({"input_ids": probe.inputs["input_ids"]}, probe.labels)
    unmasked = measure(model, ids_only, metrics=("e0",))
    assert unmasked.values["E0_1"] != pytest.approx(record.values["E0_1"], rel=1e-3)


def collate(items):
    from topo_monitor.probing.probe import collate_inputs

    batch = collate_inputs([{k: v for k, v in i.items() if k != "labels"} for i in items], PAD)
    batch["labels"] = torch.tensor([i["labels"] for i in items])
    return batch


def test_a_lightning_module_taking_batches_of_fields_is_monitored():
    import pytorch_lightning as pl

    class TextClassifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = bert().train()

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

        def training_step(self, batch, batch_idx):
            labels = batch.pop("labels")
            return nn.functional.cross_entropy(self(**batch), labels)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0",))
    trainer = quiet_trainer(max_epochs=1, callbacks=[monitor], logger=False)
    trainer.fit(TextClassifier(), DataLoader(Tokens(), batch_size=8, collate_fn=collate))
    assert monitor.block_names == [
        "model.bert.encoder.layer.0",
        "model.bert.encoder.layer.1",
        "output",
    ]
    assert set(monitor.probe.inputs) == {"input_ids", "attention_mask"}


def test_a_mapping_without_a_label_is_an_error_at_fit_start_naming_unpack():
    monitor = TopologyMonitor(samples_per_class=20)
    with pytest.raises(ValueError, match=r"no label .*unpack="):
        monitor_fit(monitor, Tokens(labelled=False))
    # Without classes, a probe needs none.
    record = measure(bert(), Tokens(labelled=False), samples_per_class=30, per_class=False)
    assert record.classes == [-1] and len(record.blocks) == 3


def monitor_fit(monitor, dataset):
    import pytorch_lightning as pl

    class Model(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = bert()

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

        def training_step(self, batch, batch_idx):
            return self(**batch).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    loader = DataLoader(dataset, batch_size=8, collate_fn=lambda items: collate_nolabel(items))
    quiet_trainer(max_epochs=1, callbacks=[monitor], logger=False).fit(Model(), loader)


def collate_nolabel(items):
    from topo_monitor.probing.probe import collate_inputs

    return collate_inputs(list(items), PAD)
