"""TopologyMonitor under real DDP (2 and 3 CPU processes, gloo) and under FSDP2 (Lightning's
ModelParallelStrategy on CPU), launched as a script the way users do.

Lightning's "ddp" strategy starts the other ranks by running the script again, so the run happens
in a subprocess of its own (tests/ddp_script.py); its process group is killed if it hangs.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import MLP, blobs
from topo_monitor import TopologyRecord, measure

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "ddp_script.py"
TIMEOUT_S = 180


def run_script(out_dir: Path, *args: int) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "tests"), str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["OMP_NUM_THREADS"] = "1"  # two ranks on a small machine
    env.pop("MASTER_PORT", None)  # let Lightning pick a free port
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out_dir), *map(str, args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # rank 1 is a child of rank 0: kill the whole group on a hang
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"DDP run hung for {TIMEOUT_S} s (collective mismatch?); output:\n{output}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, output)


def test_ddp_two_cpu_processes(tmp_path):
    result = run_script(tmp_path)
    assert result.returncode == 0, result.stdout

    ranks = [json.loads((tmp_path / f"rank{r}.txt").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["epochs"] == 2 for r in ranks)
    # The metric reaches both ranks (EarlyStopping/ModelCheckpoint read it on every rank) and
    # is the same on both.
    assert ranks[0]["metric"] == ranks[1]["metric"]
    # Every rank drew the same probe (20 per class, 3 classes: each forwards its share of it);
    # rank 0 monitored both epochs.
    assert [r["probe_size"] for r in ranks] == [60, 60]
    assert ranks[0]["history_epochs"] == [0, 1]

    histories = list(tmp_path.glob("**/topology_history.jsonl"))
    assert len(histories) == 1, histories
    lines = [json.loads(line) for line in histories[0].read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    assert lines[-1]["blocks"] == ["net.2", "net.5", "output"]
    assert ranks[0]["metric"] == pytest.approx(lines[-1]["values"]["E0_1"][-1], rel=1e-6)


@pytest.mark.parametrize(("devices", "probe_size", "sharded"), [(2, 49, 0), (3, 49, 0), (2, 49, 1)])
def test_every_rank_forwards_its_share_and_the_record_is_the_single_process_one(
    tmp_path, devices, probe_size, sharded
):
    # 49 probe items: shards of 25 + 24 on 2 ranks, 17 + 17 + 15 on 3 (padded to equal size).
    # sharded: FSDP2 through Lightning's ModelParallelStrategy, on CPU (gloo): no rank can run
    # the forward pass alone, and the parameter norm needs every rank's shard.
    result = run_script(tmp_path, devices, probe_size, sharded)
    assert result.returncode == 0, result.stdout
    ranks = [json.loads((tmp_path / f"rank{r}.txt").read_text()) for r in range(devices)]
    assert len({r["metric"] for r in ranks}) == 1
    # Every rank holds the probe (its share went through the model); only rank 0 a history.
    assert all(r["probe_size"] == probe_size for r in ranks)
    assert [len(r["history_epochs"]) for r in ranks] == [2] + [0] * (devices - 1)

    model = MLP()
    model.load_state_dict(torch.load(tmp_path / "model.pt"))
    x, y = blobs().tensors
    single = measure(model, (x[1::2][:probe_size], y[1::2][:probe_size]), epoch=1)
    logged = TopologyRecord.from_dict(json.loads((tmp_path / "record.json").read_text()))
    assert logged.blocks == single.blocks
    for metric, values in single.values.items():
        if metric != "H0_velocity":  # it needs the previous epoch, which only the run had
            np.testing.assert_allclose(logged.values[metric], values, rtol=1e-6, err_msg=metric)
    np.testing.assert_allclose(logged.sw, single.sw, rtol=1e-6)
    assert logged.extras["margin"] == pytest.approx(single.extras["margin"], rel=1e-6)
    assert logged.extras["param_norm"] == pytest.approx(single.extras["param_norm"], rel=1e-9)
