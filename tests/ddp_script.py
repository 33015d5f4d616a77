"""Train the helpers' MLP with TopologyMonitor under DDP or FSDP2 (CPU processes, gloo).

Run as ``python tests/ddp_script.py OUT_DIR [DEVICES [PROBE_SIZE [SHARDED]]]`` with ``tests/`` and
the repository on PYTHONPATH (see test_ddp.py). Lightning's "ddp" strategy starts the other ranks by
running this same script again, hence the ``__main__`` guard. Each rank writes, as JSON in
``OUT_DIR/rank{N}.txt``, the callback metric it sees and what its monitor holds; rank 0 writes the
history under ``OUT_DIR/ddp/``, and the trained weights (``model.pt``) with its last record
(``record.json``). Without PROBE_SIZE the monitor draws its probe (20 per class, e0 only); with
it, the probe is the first PROBE_SIZE of the blobs taken two apart (all default metrics). With
SHARDED = 1 the strategy is Lightning's ``ModelParallelStrategy`` (FSDP2: every Linear and the
whole net wrapped by ``fully_shard``, parameters sharded over the ranks) instead of "ddp".
"""

from __future__ import annotations

import json
import os
import sys

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from helpers import MLP, blobs, loader
from topo_monitor import TopologyMonitor

METRIC = "topology/E0_1/last"


class ShardedMLP(MLP):
    """The helpers' MLP with its parameters sharded by FSDP2 (torch's ``fully_shard``)."""

    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(self.net, mesh=mesh)


def main(out_dir: str, devices: int = 2, probe_size: int | None = None, sharded: int = 0) -> None:
    pl.seed_everything(0)
    data = blobs()
    if probe_size is None:
        monitor = TopologyMonitor(samples_per_class=20, metrics=("e0",))
    else:
        x, y = data.tensors
        monitor = TopologyMonitor(probe=(x[1::2][:probe_size], y[1::2][:probe_size]))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=ModelParallelStrategy(devices, 1) if sharded else "ddp",
        max_epochs=2,
        callbacks=[monitor],
        logger=TensorBoardLogger(out_dir, name="ddp"),
        default_root_dir=out_dir,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
    )
    model = ShardedMLP() if sharded else MLP()
    trainer.fit(model, loader(data))
    rank = trainer.global_rank
    # The whole weights, gathered from the shards on every rank (a collective), saved by rank 0.
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options) if sharded else model.state_dict()
    if rank == 0:
        torch.save(weights, os.path.join(out_dir, "model.pt"))
        with open(os.path.join(out_dir, "record.json"), "w") as f:
            json.dump(monitor.history[-1].to_dict(), f)
    result = {
        "rank": rank,
        "world_size": trainer.world_size,
        "epochs": trainer.current_epoch,
        "metric": float(trainer.callback_metrics[METRIC]),
        "history_epochs": [r.epoch for r in monitor.history],
        "probe_size": None if monitor.probe is None else len(monitor.probe),
    }
    with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
        json.dump(result, f)
    print(f"rank {rank}: {METRIC} = {result['metric']!r}", flush=True)
    # As torch asks: without it, gloo's threads can abort the exit ("terminate called without an
    # active exception"; seen once on rank 1 of a loaded 2-core machine).
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
