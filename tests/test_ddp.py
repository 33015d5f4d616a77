"""TopologyMonitor under real DDP: 2 CPU processes (gloo), launched as a script the way users do.

Lightning's "ddp" strategy starts the other ranks by running the script again, so the run happens
in a subprocess of its own (tests/ddp_script.py); its process group is killed if it hangs.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "ddp_script.py"
TIMEOUT_S = 180


def run_script(out_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "tests"), str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["OMP_NUM_THREADS"] = "1"  # two ranks on a small machine
    env.pop("MASTER_PORT", None)  # let Lightning pick a free port
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out_dir)],
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
    # Rank 0 drew the probe (20 per class, 3 classes) and monitored both epochs.
    assert ranks[0]["probe_size"] == 60
    assert ranks[0]["history_epochs"] == [0, 1]

    histories = list(tmp_path.glob("**/topology_history.jsonl"))
    assert len(histories) == 1, histories
    lines = [json.loads(line) for line in histories[0].read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    assert lines[-1]["blocks"] == ["net.2", "net.5", "output"]
    assert ranks[0]["metric"] == pytest.approx(lines[-1]["values"]["E0_1"][-1], rel=1e-6)
