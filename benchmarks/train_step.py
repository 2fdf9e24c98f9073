"""One SALGL training step (forward + loss + backward + optimiser step), timed.

  --impl reference   the released formulation, written naively (benchmarks/reference_salgl.py),
                     fp32, plain AdamW
  --impl ours        salgl's model in fp32 as salgl's trainer runs it in one process: fused
                     AdamW stepped inside backward, channels_last backbone
  --impl ours-amp    as ours, with bf16 autocast (CPU) or bf16/fp16 autocast (CUDA)
  --impl backbone    the backbone alone: the floor any head adds to

Run one implementation per process, so peak memory is its own:
  python benchmarks/train_step.py --impl ours --backbone resnet50 --img-size 224 --batch 8 \\
      --classes 80 --scenes 6 --device cpu --repeat 5 --json
With --json the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_salgl import ReferenceSALGL  # noqa: E402

from salgl.losses import SalglCriterion, asymmetric_loss, scene_regularisers  # noqa: E402
from salgl.model import SALGL, SalglConfig  # noqa: E402
from salgl.step_in_backward import StepInBackward  # noqa: E402


def build(impl: str, args: argparse.Namespace, device: torch.device):
    """(model, optimiser, step function) for one implementation."""
    embed_dim = 300
    if impl == "reference":
        model = ReferenceSALGL(args.backbone, args.classes, args.scenes, embed_dim).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)

        def loss_of(images, targets):
            logits, scene_probs = model(images, targets)
            reg = scene_regularisers(scene_probs)
            return asymmetric_loss(logits, targets) + reg["scene_sample"] + reg["scene_batch"]

        return model, opt, loss_of
    if impl == "backbone":
        import timm

        fmt = torch.contiguous_format if args.no_channels_last else torch.channels_last
        model = timm.create_model(args.backbone, num_classes=0, global_pool="").to(device)
        model = model.to(memory_format=fmt)   # as ours runs it
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
        return model, opt, lambda images, targets: model.forward_features(
            images.contiguous(memory_format=fmt)).mean()
    config = SalglConfig(backbone=args.backbone, num_classes=args.classes, img_size=args.img_size,
                         embed_dim=embed_dim, num_scenes=args.scenes,
                         backbone_stage=args.backbone_stage)
    model = SALGL(config, torch.randn(args.classes, embed_dim)).to(device)
    forward = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    if not args.step_after_backward:
        StepInBackward(opt)   # as salgl's trainer does in one process: each gradient freed early
    criterion = SalglCriterion()
    model.set_channels_last(not args.no_channels_last)   # salgl's trainer default
    model.set_recompute(args.recompute_stages)
    amp = impl == "ours-amp"
    dtype = torch.bfloat16
    if amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        dtype = torch.float16

    def loss_of(images, targets):
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            return criterion(forward(images, targets), targets)["total"]

    return model, opt, loss_of


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


PROBLEM_ARGUMENTS = ("backbone", "img_size", "batch", "classes", "scenes", "device")


def add_problem_arguments(parser: argparse.ArgumentParser) -> None:
    """The problem size and device (PROBLEM_ARGUMENTS), shared with train_step_suite.py."""
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", required=True,
                        choices=("reference", "ours", "ours-amp", "backbone"))
    add_problem_arguments(parser)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--allocator", choices=("auto", "default", "keep"), default="auto",
                        help="auto: what each implementation does (salgl keeps freed memory "
                        "on CPU, the reference does not); default/keep force one for both")
    parser.add_argument("--compile", action="store_true",
                        help="ours/ours-amp: torch.compile the model (compile time excluded)")
    parser.add_argument("--backbone-stage", type=int, default=None,
                        help="ours/ours-amp/backbone: stop the backbone at this timm stage")
    parser.add_argument("--recompute-stages", type=int, default=0,
                        help="ours/ours-amp: recompute the backbone's first N stages in "
                        "backward (train.<dataset>.recompute_stages)")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="ours/ours-amp/backbone: keep the backbone in NCHW memory")
    parser.add_argument("--step-after-backward", action="store_true",
                        help="ours/ours-amp: one optimiser step after backward instead of "
                        "stepping each parameter inside backward (keeps all gradients alive)")
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="recompute the backbone's activations in backward (less memory)")
    args = parser.parse_args()
    ours = args.impl.startswith("ours")
    steps_inside = ours and not args.step_after_backward
    keep = args.allocator == "keep" or (args.allocator == "auto" and args.impl != "reference")
    if keep and args.device == "cpu":
        from salgl.runtime import keep_freed_memory

        keep = keep_freed_memory()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, opt, loss_of = build(args.impl, args, device)
    if args.grad_checkpointing:
        backbone = model.backbone if hasattr(model, "backbone") else model
        backbone.set_grad_checkpointing(True)
    model.train()
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(args.batch, 3, args.img_size, args.img_size, generator=gen).to(device)
    targets = (torch.rand(args.batch, args.classes, generator=gen) < 0.1).float().to(device)
    times = []
    warmup_s = 0.0
    for step in range(args.warmup + args.repeat):
        sync(device)
        start = time.perf_counter()
        if steps_inside:
            loss_of(images, targets).backward()   # the hooks step and free every gradient
        else:
            opt.zero_grad(set_to_none=True)
            loss_of(images, targets).backward()
            opt.step()
        sync(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
        else:
            warmup_s += time.perf_counter() - start
    result = {"impl": args.impl, "backbone": args.backbone, "img_size": args.img_size,
              "batch": args.batch, "classes": args.classes, "scenes": args.scenes,
              "device": args.device, "repeat": args.repeat,
              "step_s_median": round(statistics.median(times), 4),
              "threads": torch.get_num_threads(), "allocator_keeps_memory": bool(keep),
              "grad_checkpointing": args.grad_checkpointing, "compile": args.compile,
              "step_in_backward": steps_inside,
              "channels_last": (ours or args.impl == "backbone") and not args.no_channels_last,
              "recompute_stages": args.recompute_stages if ours else 0,
              "warmup_s": round(warmup_s, 1)}
    if device.type == "cuda":
        result["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["gpu"] = torch.cuda.get_device_name()
    else:
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result) if args.json else
          f"{args.impl}: {result['step_s_median']:.3f} s/step (median of {args.repeat})")


if __name__ == "__main__":
    main()
