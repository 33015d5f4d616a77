"""A tiny GPT-2 language model, trained by steps, with TopologyMonitor on step cadence.

No download: the model is built from a ``transformers`` config and the text is made here, from a
small grammar (who does what to whom, where). One long epoch, ``max_steps``: the monitor measures
every ``--every`` optimizer steps on a probe of the first sentences (``per_class=False``: a
language model's text has no classes), with HuggingFace-style batches ``{"input_ids",
"attention_mask", "labels"}`` padded with the pad id, whose pads never enter a cloud.

    python examples/language_model.py                # 300 steps, runs/language_model
    tensorboard --logdir runs
"""

from __future__ import annotations

import argparse
import random

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Dataset
from transformers import GPT2Config, GPT2LMHeadModel

from topo_monitor import TopologyMonitor
from topo_monitor.probing.probe import collate_inputs

PAD, BOS, EOS = 0, 1, 2
WORDS = {
    "subject": ["the cat", "a dog", "the old man", "my sister", "the robot", "a child"],
    "verb": ["sees", "follows", "paints", "finds", "chases", "greets"],
    "object": ["the ball", "a bird", "the red door", "his friend", "a small boat"],
    "place": ["in the park", "at home", "near the river", "on the hill", "", ""],
}


def vocabulary() -> dict[str, int]:
    words = sorted({w for phrases in WORDS.values() for p in phrases for w in p.split()})
    return {w: i + 3 for i, w in enumerate(words)}


class Sentences(Dataset):
    """Token ids of sentences drawn from the grammar (6 to 13 tokens with BOS/EOS)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng, vocab = random.Random(seed), vocabulary()
        self.items = []
        for _ in range(n):
            text = " ".join(rng.choice(WORDS[part]) for part in WORDS).split()
            ids = torch.tensor([BOS, *(vocab[w] for w in text), EOS])
            self.items.append(
                {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    batch = collate_inputs(items, PAD)
    batch["labels"] = batch["labels"].masked_fill(batch["attention_mask"] == 0, -100)
    return batch


class TinyGPT(pl.LightningModule):
    def __init__(self, layers: int = 4, width: int = 64) -> None:
        super().__init__()
        config = GPT2Config(
            vocab_size=len(vocabulary()) + 3,
            n_positions=32,
            n_embd=width,
            n_layer=layers,
            n_head=4,
            pad_token_id=PAD,
            bos_token_id=BOS,
            eos_token_id=EOS,
        )
        self.model = GPT2LMHeadModel(config)

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def main(argv: list[str] | None = None) -> TopologyMonitor:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=25, help="monitor every n optimizer steps")
    parser.add_argument("--logdir", default="runs")
    parser.add_argument("--probe", type=int, default=400, help="probe sentences")
    args = parser.parse_args(argv)
    pl.seed_everything(0, verbose=False)
    monitor = TopologyMonitor(
        every_n_train_steps=args.every,
        per_class=False,
        samples_per_class=args.probe,
        pad_value=PAD,
        figures_every_n_epochs=4,
    )
    trainer = pl.Trainer(
        max_steps=args.max_steps,
        callbacks=[monitor],
        logger=TensorBoardLogger(args.logdir, name="language_model"),
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=10,
    )
    loader = DataLoader(Sentences(20_000), batch_size=32, shuffle=True, collate_fn=collate)
    trainer.fit(TinyGPT(), loader)
    last = monitor.history[-1]
    print(f"checks at steps {[r.step for r in monitor.history]}, all in epoch {last.epoch}")
    for block, e0, dim in zip(
        last.blocks, last.values["E0_1_scaled"], last.values["PHdim"], strict=True
    ):
        print(f"  {block:22s} scale-free E0 {e0:8.2f}   PHdim {dim:5.2f}")
    print(f"tensorboard --logdir {args.logdir}")
    return monitor


if __name__ == "__main__":
    main()
