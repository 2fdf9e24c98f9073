"""Several processes (gloo on CPU) equal one process: the co-occurrence memory gathers the
global batch, so after the same global batches it matches exactly, and the weights agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from salgl.losses import SalglCriterion
from salgl.model import SALGL, SalglConfig

from local_ports import free_port

STEPS, GLOBAL_BATCH, WORLD = 3, 8, 2
REPO = Path(__file__).resolve().parents[1]


def build() -> tuple[SALGL, torch.optim.Optimizer, SalglCriterion]:
    """A BatchNorm-free backbone and no dropout: each image's forward is independent of how
    the batch is split, so one process and two can be compared exactly."""
    torch.manual_seed(0)
    config = SalglConfig(backbone="test_vit", num_classes=6, img_size=32, embed_dim=5,
                         num_scenes=3, attention_dim=16, encoder_heads=8, encoder_ffn=32,
                         dropout=0.0)
    model = SALGL(config, torch.randn(6, 5)).train()
    # SGD, not AdamW: a few parameters have an exactly zero gradient (key biases before a
    # softmax, the attention-score biases), so their gradient is float rounding (~1e-9) that
    # differs between any two reduction orders; Adam's per-parameter normalisation turns it
    # into full-size steps (~1e-5 here) in both runs alike. SGD tests the distributed
    # computation itself.
    opt = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    return model, opt, SalglCriterion()


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=gen),
             (torch.rand(GLOBAL_BATCH, 6, generator=gen) < 0.4).float())
            for _ in range(STEPS)]


def single_process() -> dict[str, torch.Tensor]:
    model, opt, criterion = build()
    for images, targets in batches():
        opt.zero_grad()
        criterion(model(images, targets), targets)["total"].backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from salgl.distributed import gather_rows, gather_scene_batch

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)
    torch.set_num_threads(1)
    model, opt, criterion = build()
    model.gather = gather_scene_batch
    criterion.gather, criterion.world = gather_rows, WORLD
    ddp = DistributedDataParallel(model)
    share = GLOBAL_BATCH // WORLD
    for images, targets in batches():
        rows = slice(rank * share, (rank + 1) * share)
        opt.zero_grad()
        criterion(ddp(images[rows], targets[rows]), targets[rows])["total"].backward()
        opt.step()
    if rank == 0:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, out)
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_two_processes_match_one(tmp_path: Path) -> None:
    out = tmp_path / "rank0.safetensors"
    mp.spawn(worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    ddp_state = load_file(str(out))
    single = single_process()
    assert torch.equal(ddp_state["cooccurrence"], single["cooccurrence"])
    assert single["cooccurrence"].sum() > 0
    for key, value in single.items():
        assert torch.allclose(ddp_state[key].float(), value.float(), atol=1e-5), key
    moved = max((single[k] - build()[0].state_dict()[k]).abs().max().item() for k in single
                if single[k].is_floating_point() and k != "cooccurrence")
    assert moved > 1e-5  # the steps changed the weights, so agreeing means something


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SALGL_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "salgl.cli", "-q", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.parametrize("nproc,batch,fragment", [
    (64, 64, "nproc: 64 processes requested but only"),
    (2, 63, "train.fashion_scenes.batch_size: the global batch 63 is not divisible by nproc 2"),
])
def test_ddp_launch_refuses_what_cannot_run(tmp_path: Path, nproc: int, batch: int,
                                            fragment: str) -> None:
    (tmp_path / "params.yaml").write_text(
        f"datasets: [fashion_scenes]\ntrain:\n  fashion_scenes:\n    batch_size: {batch}\n",
        encoding="utf-8")
    result = run_cli("train", "fashion_scenes", "--params", str(tmp_path / "params.yaml"),
                     "--processes", str(nproc), "--out", str(tmp_path / "m.safetensors"))
    assert result.returncode == 2
    assert fragment in result.stderr
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("env,processes,batch,fragment", [
    ({"LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"}, 3, 8,
     "--processes: 3, but torchrun started 2 process(es) on this node"),
    ({"LOCAL_WORLD_SIZE": "1", "WORLD_SIZE": "3"}, 1, 8,
     "b: the global batch 8 is not divisible by the 3 processes of all nodes; use a multiple"),
])
def test_a_node_under_torchrun_is_checked_against_every_node(
        monkeypatch: pytest.MonkeyPatch, env: dict, processes: int, batch: int,
        fragment: str) -> None:
    from salgl.distributed import check_node
    from salgl.errors import SalglError

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SalglError) as raised:
        check_node(processes, batch, "cpu", "b")
    assert fragment in str(raised.value)
    monkeypatch.setenv("WORLD_SIZE", env["LOCAL_WORLD_SIZE"])
    check_node(1, int(env["LOCAL_WORLD_SIZE"]) * 4, "cpu", "b")  # one node that fits: fine


@pytest.mark.parametrize("raw,seconds", [("", 600), ("30", 30), (" 1.5 ", 1.5),
                                         ("0", None), ("nan", None), ("ten", None),
                                         ("1e9", None)])
def test_the_collective_timeout_comes_from_its_variable(monkeypatch: pytest.MonkeyPatch,
                                                        raw: str, seconds: float | None) -> None:
    from salgl.distributed import collective_timeout
    from salgl.errors import SalglError

    monkeypatch.setenv("SALGL_DIST_TIMEOUT", raw)
    if seconds is None:
        with pytest.raises(SalglError, match="SALGL_DIST_TIMEOUT: .* is not a number of sec"):
            collective_timeout()
    else:
        assert collective_timeout().total_seconds() == seconds


def test_processes_that_disagree_where_to_resume_are_named() -> None:
    from salgl.resume import starting_points

    assert starting_points([2, -1, -1]) == "rank 0 from epoch 3, ranks 1, 2 from the start"
