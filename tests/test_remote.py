"""Sharing weights through a DVC remote, for real, on loopback: a local-folder remote, then
the same folder served read-only over HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dvc_repo import run

MODEL = Path("models/fashion_scenes/model.safetensors")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(folder: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                               str(port), "--directory", str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("HTTP server did not start")


def clone(source: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", str(source), str(dest)], source.parent)
    return dest


def fails(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1",
                                 "PATH": str(Path(sys.executable).parent) + os.pathsep
                                 + os.environ.get("PATH", "")})
    assert result.returncode != 0, result.stdout
    return result


@pytest.mark.slow
def test_push_pull_and_read_only_http_remote(reproduced: tuple[Path, dict],
                                             tmp_path: Path) -> None:
    repo, _ = reproduced
    assert "Running stage" not in run(["dvc", "repro"], repo).stdout
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "store", str(remote)], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results and remote"], repo)
    run(["dvc", "push"], repo)
    weights = (repo / MODEL).read_bytes()

    # a colleague: clone, pull, nothing to rebuild
    first = clone(repo, tmp_path / "colleague")
    assert not (first / MODEL).exists()
    run(["dvc", "pull"], first)
    assert (first / MODEL).read_bytes() == weights
    assert "up to date" in run(["dvc", "status"], first).stdout
    assert "Running stage" not in run(["dvc", "repro"], first).stdout

    # a model-registry version, fetched without cloning
    run(["git", "tag", "-a", "fashion-scenes-model@v0.1.0", "-m", "tiny model"], repo)
    run(["dvc", "artifacts", "get", str(repo), "fashion-scenes-model", "-o",
         str(tmp_path / "got.safetensors")], tmp_path)
    assert (tmp_path / "got.safetensors").read_bytes() == weights

    # the same remote folder as a read-only HTTP remote; only one dataset's weights
    port = free_port()
    server = serve(remote, port)
    try:
        second = clone(repo, tmp_path / "reader")
        run(["dvc", "remote", "add", "--local", "-d", "web", f"http://127.0.0.1:{port}"],
            second)
        run(["dvc", "pull", "train@fashion_scenes"], second)
        assert (second / MODEL).read_bytes() == weights
        assert not (second / "data" / "prepared" / "fashion_scenes").exists()

        # what a user sees when the remote lacks an object
        for path in remote.rglob("*"):
            if path.is_file() and path.stat().st_size == len(weights):
                path.unlink()
        third = clone(repo, tmp_path / "unlucky")
        run(["dvc", "remote", "add", "--local", "-d", "web", f"http://127.0.0.1:{port}"],
            third)
        missing = fails(["dvc", "pull", "train@fashion_scenes"], third)
        text = missing.stdout + missing.stderr
        assert "failed to pull data from the cloud" in text.lower() or "missing" in text.lower()
        assert str(MODEL) in text
    finally:
        server.terminate()
        server.wait(timeout=10)
    shutil.rmtree(remote)
