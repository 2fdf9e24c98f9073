"""`salgl predict` throughput on this CPU: images/s by batch size and torch threads.

Uses the default pipeline's model and its prepared test images (run `dvc repro` first).
Run: python benchmarks/bench_predict.py --images 512 --batches 1 32 128 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from salgl.checkpoint import load_model
from salgl.predict import predict_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path,
                        default=Path("models/fashion_scenes/model.safetensors"))
    parser.add_argument("--images-dir", type=Path,
                        default=Path("data/prepared/fashion_scenes/images/test"))
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    paths = sorted(args.images_dir.glob("*.png"))[: args.images]
    model, info = load_model(args.model)
    model.set_channels_last()   # as salgl predict runs it
    device = torch.device("cpu")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batches:
            list(predict_batches(model, info, paths[:batch], batch, device, progress=False))
            start = time.perf_counter()
            done = sum(1 for _ in predict_batches(model, info, paths, batch, device,
                                                  progress=False))
            seconds = time.perf_counter() - start
            rows.append({"threads": threads, "batch": batch, "images": done,
                         "images_per_s": round(done / seconds, 1)})
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
