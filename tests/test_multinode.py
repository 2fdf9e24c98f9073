"""Several nodes, as the README's "Several GPUs and nodes" starts them, on this machine: two
torchrun launches on 127.0.0.1 (one process each, gloo, c10d rendezvous on a free port),
started by the SLURM script under stand-ins for srun and scontrol, train the same weights as
one node of two processes, bit for bit, and close to one process; with the plain torchrun
line, a node lost mid-run ends the other with one line within the collective timeout, and a
rerun of both resumes to the unbroken run's weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import LABELS, write_embeddings
from fakes import make_prepared
from local_ports import free_port, wait_until_listening

REPO = Path(__file__).resolve().parents[1]
PAUSE_AT = Path(__file__).parent / "scripts" / "pause_at.py"
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))  # the environment's own launcher
# One global batch per epoch holding every training image: one process and two then sum the
# same images' gradients, in another order only. A LayerNorm backbone (no BatchNorm statistics
# of a process's half batch), no dropout and no random augmentation leave nothing else apart.
SETTINGS = dict(backbone="test_vit", img_size=32, num_scenes=2, attention_dim=16,
                encoder_ffn=16, dropout=0.0, hflip=False, cutout=False, randaugment=False,
                epochs=3, batch_size=16, warmup=0.6, patience=10, lr=3e-3, ema_decay=0.9,
                num_workers=0, device="cpu")
TIMEOUT_S = 30  # SALGL_DIST_TIMEOUT of these runs: the bound on a lost node's wait


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nodes")
    make_prepared(root / "prepared", LABELS, n_train=16, n_test=8)
    write_embeddings(root / "prepared", root / "emb")
    (root / "params.yaml").write_text(yaml.safe_dump(
        {"datasets": ["fashion_scenes"], "train": {"fashion_scenes": SETTINGS}}),
        encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def two_node_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One unbroken two-node run, the reference of both tests below, started as on SLURM:
    scripts/slurm-train.sh under stand-ins for srun (its command once per node, side by
    side) and scontrol (the job's node names)."""
    root = tmp_path_factory.mktemp("slurm")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        "#!/usr/bin/env bash\n"
        "while [[ $1 == --* ]]; do shift; done\n"
        "pids=()\n"
        "for ((node = 0; node < SLURM_NNODES; node++)); do\n"
        "    SLURM_NODEID=$node \"$@\" & pids+=($!)\n"
        "done\n"
        "status=0\n"
        "for pid in \"${pids[@]}\"; do wait \"$pid\" || status=$?; done\n"
        "exit $status\n", encoding="utf-8")
    (bin_dir / "scontrol").write_text(
        "#!/usr/bin/env bash\n"
        "[ \"$1 $2\" = 'show hostnames' ] && tr ',' '\\n' <<< \"$3\"\n", encoding="utf-8")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**environment(), "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}"
           f"{os.pathsep}{os.environ['PATH']}",
           "SLURM_SUBMIT_DIR": str(REPO), "SLURM_NNODES": "2", "SLURM_JOB_ID": "7",
           "SLURM_JOB_NODELIST": "127.0.0.1,127.0.0.1", "SALGL_RDZV_PORT": str(free_port()),
           "SALGL_NPROC_PER_NODE": "1"}
    run = root / "run"
    result = subprocess.run(["bash", str(REPO / "scripts" / "slurm-train.sh"),
                             *train_args(data, run)[1:]], cwd=root, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    return run


def environment() -> dict[str, str]:
    return {**os.environ, "SALGL_OFFLINE": "1", "PYTHONPATH": str(REPO),
            "SALGL_DIST_TIMEOUT": str(TIMEOUT_S), "OMP_NUM_THREADS": "1"}


def train_args(data: Path, run: Path) -> list[str]:
    return ["train", "fashion_scenes", "--params", str(data / "params.yaml"),
            "--prepared", str(data / "prepared"), "--embeddings", str(data / "emb"),
            "--out", str(run / "model.safetensors"), "--state", str(run / "state"),
            "--live", str(run / "live")]


def start_node(port: int, program: list[str]) -> subprocess.Popen:
    """One node: the README's torchrun line, one process on this node."""
    command = [TORCHRUN, "--nnodes", "2",
               "--nproc-per-node", "1", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "salgl-test",
               "--rdzv-conf", "join_timeout=120", *program]
    return subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"a node did not finish within {timeout} s:\n{err}") from None
    return process.returncode, err


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def scores(run: Path, images: torch.Tensor) -> torch.Tensor:
    from salgl.checkpoint import load_model

    model, _ = load_model(run / "model.safetensors")
    with torch.no_grad():
        return torch.sigmoid(model(images)["logits"])


def test_two_nodes_train_what_one_node_of_two_processes_trains(data: Path, two_node_run: Path,
                                                               tmp_path: Path) -> None:
    one_node = subprocess.run(
        [sys.executable, "-m", "salgl.cli", "-q", *train_args(data, tmp_path / "node"),
         "--processes", "2"], cwd=REPO, env=environment(), capture_output=True, text=True,
        timeout=240)
    assert one_node.returncode == 0, one_node.stderr
    a, b = weights(two_node_run), weights(tmp_path / "node")
    assert a.keys() == b.keys()
    for key in a:  # the same two ranks sum the same halves in the same order
        assert torch.equal(a[key], b[key]), key
    assert a["cooccurrence"].sum() > 0

    from salgl.config import TrainConfig
    from salgl.data.prepared import load_prepared
    from salgl.train import train

    single = tmp_path / "single"
    train("fashion_scenes", TrainConfig(**SETTINGS), load_prepared(data / "prepared"),
          data / "emb", single / "model.safetensors", single / "state", single / "live",
          progress=False)
    c = weights(single)
    # The co-occurrence memory counts whole label vectors of the same global batches: exact.
    assert torch.equal(a["cooccurrence"], c["cooccurrence"])
    # The weights are not compared one by one: a few parameters have an exactly zero gradient
    # (a key bias before a softmax), so their gradient is rounding that differs between the
    # two summation orders and AdamW turns it into full-size steps of no consequence. What
    # the model computes is compared instead.
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    gap = (scores(two_node_run, images) - scores(single, images)).abs().max().item()
    assert gap < 1e-4, gap
    assert any(not torch.equal(a[k], c[k]) for k in a)  # two runs, not one file


def test_a_lost_node_ends_the_other_with_one_line_and_both_resume(data: Path,
                                                                  two_node_run: Path,
                                                                  tmp_path: Path) -> None:
    run, marker = tmp_path / "run", tmp_path / "paused.json"
    port = free_port()
    kept = start_node(port, ["-m", "salgl.cli", "-q", *train_args(data, run)])
    wait_until_listening(port, kept, 120)
    lost = start_node(port, [str(PAUSE_AT), "2", str(marker), "--", "-q",
                             *train_args(data, run)])
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert time.monotonic() < deadline and lost.poll() is None, lost.communicate()
        time.sleep(0.2)
    paused = json.loads(marker.read_text(encoding="utf-8"))
    for pid in (paused["agent"], paused["pid"]):  # the whole node, at once
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    code, err = finish(kept, timeout=TIMEOUT_S + 60)
    took = time.monotonic() - killed
    lost.communicate()
    assert code != 0
    assert took < TIMEOUT_S + 30, took
    print(f"the surviving node stopped {took:.1f} s after the other was killed")
    ours = [line for line in err.splitlines() if line.startswith("salgl train: error:")]
    assert len(ours) == 1, err
    assert "lost another training process" in ours[0], err
    assert "rerun every node to resume from the last saved epoch" in ours[0], err
    assert "Traceback" not in err.split("salgl train: error:")[0], err  # none of salgl's
    assert not (run / "model.safetensors").exists()

    port = free_port()
    first = start_node(port, ["-m", "salgl.cli", *train_args(data, run)])
    wait_until_listening(port, first, 120)
    second = start_node(port, ["-m", "salgl.cli", *train_args(data, run)])
    said = ""
    for node in (first, second):
        code, err = finish(node)
        assert code == 0, err
        said += err
    assert "resuming fashion_scenes from epoch 3" in said, said
    a, b = weights(two_node_run), weights(run)
    for key in a:
        assert torch.equal(a[key], b[key]), key
