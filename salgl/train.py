"""The training loop: AdamW + OneCycle, EMA, selection and early stopping on validation mAP,
per-label thresholds calibrated on the validation split, resumable, DVCLive.

With ``select_on: val`` (the default) the test split is never read here: the evaluate stage
scores it once, with the selected weights. ``select_on: test`` is the paper's protocol.

Resume: after every epoch the whole training state (model, EMA, best EMA weights, optimiser,
scheduler, counters) goes to ``state_dir/last.safetensors`` under a fingerprint of the settings
and data; a rerun with the same fingerprint continues from the next epoch. Each epoch reseeds
from (seed, epoch), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from salgl import checkpoint
from salgl.config import TrainConfig, to_dict
from salgl.data.dataset import (
    MultiLabelImages,
    build_transform,
    check_images_exist,
    normalization_stats,
)
from salgl.data.prepared import PreparedDataset, Split
from salgl.distributed import (
    DistInfo,
    broadcast_state,
    gather_rows,
    gather_scene_batch,
    init_from_env,
)
from salgl.ema import ModelEma
from salgl.errors import SalglError
from salgl.losses import SalglCriterion
from salgl.metrics import average_precision, mean_ap
from salgl.model.salgl import BackboneModel, SalglConfig, create_model
from salgl.runtime import cpu_cores, keep_freed_memory
from salgl.step_in_backward import StepInBackward

log = logging.getLogger(__name__)

STATE_FILE = "last.safetensors"
LIVE_STAGING = "live"  # DVCLive logs here, published to live_dir after each epoch
STATE_NOTE = """Resume state of the train stage. While training runs, last.safetensors here holds
everything needed to continue from the last finished epoch, and live/ the training curves
that are copied to dvclive/ after each epoch (both are removed when training ends and are
never committed or pushed). This note keeps the folder, a DVC output, present in every
clone, so `dvc status` stays clean after `dvc pull`.
"""


@dataclass
class TrainResult:
    best_map: float  # mAP on the selection split (val, or test under the paper's protocol)
    best_epoch: int
    epochs_run: int
    resumed_from: int
    selected_on: str = "val"
    val_map: float | None = None
    epoch_seconds: tuple[float, ...] = ()  # wall time of each epoch this process trained


def autocast_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """The precision training runs in, and evaluation with it: bf16 where the GPU has it,
    else fp16, on CUDA with ``amp``; None (fp32) otherwise."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def select_device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise SalglError("train.<dataset>.device: cuda requested but no CUDA device is present")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def default_workers(device: torch.device) -> int:
    """Leave the cores to the model on CPU; feed a GPU with most of them."""
    cores = cpu_cores()
    if device.type == "cuda":
        return max(1, min(16, cores - 1))
    return 1 if cores >= 2 else 0


def check_batch(cfg: TrainConfig, train_images: int, list_file: Path, key: str) -> None:
    """Refuse a batch larger than the training split, before anything is written."""
    if cfg.batch_size > train_images:
        raise SalglError(f"{key}.batch_size: {cfg.batch_size} is larger than the training "
                         f"split ({train_images} images in {list_file}); lower it")


def check_schedule(cfg: TrainConfig, steps_per_epoch: int, key: str) -> None:
    """The one-cycle schedule's warm-up must last more than one optimiser step: at exactly
    one, PyTorch's scheduler divides by zero, and below it skips the warm-up altogether."""
    if cfg.warmup >= 1.0:
        raise SalglError(f"{key}.warmup: must be below 1 (the schedule needs a decay phase)")
    total = cfg.epochs * steps_per_epoch
    need = math.floor(1 / cfg.warmup) + 1
    if total < need:
        raise SalglError(
            f"{key}.epochs: {cfg.epochs} epoch(s) of {steps_per_epoch} step(s) make "
            f"{total} optimiser steps, too few for the one-cycle schedule with warmup "
            f"{cfg.warmup} (it needs at least {need}); raise epochs or lower batch_size")


def model_config(cfg: TrainConfig, num_classes: int, embed_dim: int | None) -> SalglConfig:
    """The architecture the settings ask for; the linear head has one scene and no steps."""
    plain = cfg.head == "linear"
    return SalglConfig(
        backbone=cfg.backbone, num_classes=num_classes, img_size=cfg.img_size,
        embed_dim=embed_dim, num_scenes=1 if plain else cfg.num_scenes,
        num_steps=0 if plain else cfg.num_steps,
        attention_dim=cfg.attention_dim, encoder_heads=cfg.encoder_heads,
        encoder_ffn=cfg.encoder_ffn, dropout=cfg.dropout, output_stride=cfg.output_stride,
        backbone_stage=cfg.backbone_stage,
        pos_encoding=cfg.pos_encoding, outmess=cfg.outmess, normalize=cfg.normalize,
        ignore_self=cfg.ignore_self, soft=cfg.soft, head=cfg.head)


def load_label_vectors(embed_dir: Path, labels: list[str]) -> tuple[np.ndarray, dict]:
    vectors_path, info_path = embed_dir / "vectors.npy", embed_dir / "info.json"
    for path in (vectors_path, info_path):
        if not path.is_file():
            raise SalglError(f"{path}: missing (run the embed stage first)")
    vectors = np.load(vectors_path, allow_pickle=False)
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if vectors.ndim != 2 or vectors.shape[0] != len(labels):
        raise SalglError(f"{vectors_path}: shape {vectors.shape} does not match "
                         f"{len(labels)} labels")
    if info.get("labels_order", labels) != labels:
        raise SalglError(f"{info_path}: label order differs from labels.txt (rerun embed)")
    return vectors, info


def fingerprint(cfg: TrainConfig, data_print: str, vectors: np.ndarray) -> str:
    """Identifies settings + data, so resume state from another run is never reused."""
    h = hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode())
    h.update(data_print.encode())
    h.update(np.ascontiguousarray(vectors).tobytes())
    return h.hexdigest()


def data_fingerprint(data: PreparedDataset) -> str:
    """The labels and the training and validation splits (names, targets, unscored pairs):
    the same prepared data gives the same value on any machine."""
    h = hashlib.sha256("\n".join(data.labels).encode())
    for split in (data.train, data.val):
        h.update(split.fingerprint().encode() if split is not None else b"-")
    return h.hexdigest()


def build_model(cfg: TrainConfig, labels: list[str], vectors: np.ndarray, info: dict,
                key: str) -> BackboneModel:
    embed_dim = None if info.get("source") == "random" else int(vectors.shape[1])
    mcfg = model_config(cfg, len(labels), embed_dim)
    embeddings = None if embed_dim is None else torch.from_numpy(vectors)
    model = create_model(mcfg, embeddings, pretrained=cfg.pretrained,
                         pretrained_path=cfg.pretrained_path)
    if cfg.head == "salgl" and model.feature_dim % cfg.encoder_heads:
        raise SalglError(f"{key}.encoder_heads: {cfg.encoder_heads} does not divide the "
                         f"backbone's feature width {model.feature_dim}")
    return model


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device
                   ) -> torch.optim.Optimizer:
    """AdamW in one fused kernel per step (CUDA and CPU): no per-parameter Python loop and
    no list of temporaries as large as the model, which foreach would allocate."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


@torch.no_grad()
def match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give loaded optimiser state the memory layout of its parameter.

    State read from a file is contiguous, while a channels-last weight's moments were created
    channels-last. The fused AdamW kernel then takes another code path with other rounding
    (about 1e-5 after one epoch, growing from there), so a resumed run would drift from an
    unbroken one. Copying each moment into a tensor laid out like its parameter keeps every
    step bitwise the same.
    """
    for param, state in optimizer.state.items():
        for name, value in state.items():
            if (torch.is_tensor(value) and value.shape == param.shape
                    and value.stride() != param.stride()):
                state[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)


@torch.no_grad()
def predict_scores(model: torch.nn.Module, loader: DataLoader, device: torch.device,
                   dtype: torch.dtype | None = None, progress: bool = False,
                   desc: str = "predict") -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid scores (N, C) and scene probabilities (N, S) in dataset order."""

    scores, scenes, _ = predict_with_indices(model, loader, device, dtype, progress, desc)
    return scores.numpy(), scenes.numpy()


@torch.no_grad()
def predict_with_indices(model: torch.nn.Module, loader: DataLoader, device: torch.device,
                         dtype: torch.dtype | None = None, progress: bool = False,
                         desc: str = "predict"
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """As predict_scores, plus each row's dataset index; ``dtype`` autocasts (None: fp32)."""
    from tqdm import tqdm

    model.eval()
    scores, scenes, indices = [], [], []
    for images, _, index in tqdm(loader, desc=desc, disable=not progress, leave=False):
        images = images.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(images)
        scores.append(torch.sigmoid(out["logits"].float()))
        scenes.append(out["scene_probs"].float())
        indices.append(torch.as_tensor(index, device=images.device))
    return torch.cat(scores).cpu(), torch.cat(scenes).cpu(), torch.cat(indices).cpu()


def gather_predictions(scores: torch.Tensor, indices: torch.Tensor, total: int,
                       device: torch.device) -> torch.Tensor:
    """Every rank's shard of the test set, back in dataset order (sampler padding dropped)."""
    all_scores = gather_rows(scores.to(device)).cpu()
    all_indices = gather_rows(indices.to(device)).cpu()
    ordered = torch.empty(total, scores.shape[1], dtype=scores.dtype)
    ordered[all_indices] = all_scores
    return ordered


class Trainer:
    """One dataset's training run; ``run`` trains to the end (or resumes) and saves the model."""

    def __init__(self, name: str, cfg: TrainConfig, data: PreparedDataset, embed_dir: Path,
                 model_out: Path, state_dir: Path, live_dir: Path | None, progress: bool = True):
        self.name, self.cfg, self.data = name, cfg, data
        self.key = f"train.{name}"
        self.model_out, self.state_dir, self.live_dir = model_out, state_dir, live_dir
        self.live_staging = state_dir / LIVE_STAGING
        self.dist: DistInfo = init_from_env(cfg.device)
        self.progress = progress and self.dist.main
        self.device = select_device(cfg.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.device.type == "cpu":
            keep_freed_memory()
        if cfg.batch_size % self.dist.world:
            raise SalglError(f"{self.key}.batch_size: the global batch {cfg.batch_size} is not "
                             f"divisible by the {self.dist.world} processes")
        check_batch(cfg, len(data.train), data.root / "train.tsv", self.key)
        if cfg.select_on == "val" and data.val is None:
            raise SalglError(f"{self.key}.select_on: val, but {data.root / 'val.tsv'} is "
                             f"missing (set prepare.{name}.val_fraction above 0 and rerun "
                             "prepare, or select on test, the paper's protocol)")
        self.select_split = data.split(cfg.select_on)
        check_images_exist(data.train.paths, data.root / "train.tsv")
        check_images_exist(self.select_split.paths, data.root / f"{cfg.select_on}.tsv")
        if data.val is not None and cfg.select_on != "val":
            check_images_exist(data.val.paths, data.root / "val.tsv")
        self.vectors, self.embed_info = load_label_vectors(embed_dir, data.labels)
        self.data_fingerprint = data_fingerprint(data)
        self.fingerprint = fingerprint(cfg, self.data_fingerprint, self.vectors)
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg, data.labels, self.vectors, self.embed_info,
                                 self.key).to(self.device)
        self.model.set_channels_last(cfg.channels_last)
        self.model.set_recompute(cfg.recompute_stages, f"{self.key}.recompute_stages")
        self.criterion = SalglCriterion(cfg.gamma_neg, cfg.gamma_pos, cfg.clip, cfg.scene_weight)
        self.forward_model: torch.nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.model.gather = gather_scene_batch
            self.criterion.gather = gather_rows
            self.criterion.world = self.dist.world
            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.amp_dtype = autocast_dtype(cfg.amp, self.device)
        self.use_amp = self.amp_dtype is not None
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        # DDP averages gradients after backward and fp16 scaling checks them all first, so
        # both need the classic step after backward.
        self.step_in_backward = (StepInBackward(self.optimizer) if cfg.step_in_backward
                                 and not self.dist.enabled and not self.scaler.is_enabled()
                                 else None)
        self.generator = torch.Generator()  # reseeded every epoch: the shuffle order
        self.train_loader = self._loader(data.train, train=True)
        self.select_loader = self._loader(self.select_split, train=False)
        self.steps_per_epoch = len(self.train_loader)
        check_schedule(cfg, self.steps_per_epoch, self.key)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * self.steps_per_epoch,
            pct_start=cfg.warmup)
        # EMA lives on rank 0; other ranks receive its weights for the sharded evaluation.
        self.ema = ModelEma(self.model, cfg.ema_decay, cfg.comat_ema) if self.dist.main else None
        self.eval_model = self.ema.module if self.ema is not None else copy.deepcopy(self.model)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_map, self.best_epoch, self.stale, self.start_epoch = -1.0, -1, 0, 0

    def summary(self) -> str:
        """One line: where and how this run trains."""
        precision = {None: "fp32", torch.bfloat16: "bf16 autocast",
                     torch.float16: "fp16 autocast"}[self.amp_dtype]
        workers = self.train_loader.num_workers
        where = (f"{self.dist.world} processes" if self.dist.enabled else "1 process")
        return (f"{self.name}: training on {self.device} ({torch.get_num_threads()} threads, "
                f"{where}), {workers} loader worker(s), {precision}; {len(self.data.train)} "
                f"images in {self.steps_per_epoch} steps per epoch, {self.cfg.epochs} epochs; "
                f"epoch selected on {self.cfg.select_on} ({len(self.select_split)} images)")

    # -- data
    def _loader(self, split: Split, train: bool) -> DataLoader:
        cfg = self.cfg
        transform = build_transform(cfg.img_size, cfg.normalization, train, hflip=cfg.hflip,
                                    cutout=cfg.cutout, randaugment=cfg.randaugment,
                                    augment=cfg.augment)
        workers = default_workers(self.device) if cfg.num_workers is None else cfg.num_workers
        targets = split.targets
        if train and split.ignore is not None:  # -1: left out of the loss (train_epoch)
            targets = np.where(split.ignore > 0, -1, targets.astype(np.int8))
        dataset = MultiLabelImages(split.paths, targets, transform)
        batch = cfg.batch_size // self.dist.world
        sampler = None
        if self.dist.enabled:
            from torch.utils.data import DistributedSampler

            sampler = DistributedSampler(dataset, self.dist.world, self.dist.rank, shuffle=train,
                                         seed=cfg.seed, drop_last=train)
        return DataLoader(
            dataset, batch_size=batch, shuffle=train and sampler is None, sampler=sampler,
            drop_last=train and len(split) > cfg.batch_size,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            generator=self.generator if train and sampler is None else None,
            persistent_workers=False)

    # -- resume
    def _state_tensors(self) -> dict[str, torch.Tensor]:
        opt_tensors, _ = checkpoint.flatten_optimizer(self.optimizer.state_dict())
        tensors = {**checkpoint.prefixed(self.model.state_dict(), "model"),
                   **checkpoint.prefixed(self.ema.state_dict(), "ema"), **opt_tensors}
        # (only rank 0 saves, and rank 0 holds the EMA)
        if self.best_state is not None:
            tensors.update(checkpoint.prefixed(self.best_state, "best"))
        return tensors

    def _ensure_state_dir(self) -> None:
        """The note that keeps the folder, minus temporary files a killed write left."""
        from salgl.atomic import write_text

        for leftover in self.state_dir.glob(".*.tmp"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        note = self.state_dir / "README.txt"
        if not note.is_file() or note.read_text(encoding="utf-8") != STATE_NOTE:
            write_text(note, STATE_NOTE)

    def save_state(self, epoch: int) -> None:
        if not self.dist.main:
            return
        _, opt_structure = checkpoint.flatten_optimizer(self.optimizer.state_dict())
        meta = {"fingerprint": self.fingerprint, "epoch": epoch, "best_map": self.best_map,
                "best_epoch": self.best_epoch, "stale": self.stale,
                "optimizer": opt_structure, "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None}
        checkpoint.save_state(self.state_dir / STATE_FILE, self._state_tensors(), meta)

    def try_resume(self) -> bool:
        loaded = checkpoint.load_state(self.state_dir / STATE_FILE)
        if loaded is None:
            return False
        tensors, meta = loaded
        if meta.get("fingerprint") != self.fingerprint:
            log.info("resume state belongs to other settings or data; starting fresh")
            return False
        self.model.load_state_dict(checkpoint.unprefixed(tensors, "model"))
        if self.ema is not None:
            self.ema.load_state_dict(checkpoint.unprefixed(tensors, "ema"))
        best = checkpoint.unprefixed(tensors, "best")
        self.best_state = best or None
        self.optimizer.load_state_dict(checkpoint.unflatten_optimizer(
            {k: v.to(self.device) for k, v in tensors.items() if k.startswith("optimizer.")},
            meta["optimizer"]))
        match_param_layout(self.optimizer)
        self.scheduler.load_state_dict(meta["scheduler"])
        if meta.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(meta["scaler"])
        self.best_map, self.best_epoch = meta["best_map"], meta["best_epoch"]
        self.stale, self.start_epoch = meta["stale"], meta["epoch"] + 1
        if self.dist.main:
            log.info("resuming %s from epoch %d (best %s mAP %.4f at epoch %d)", self.name,
                     self.start_epoch + 1, self.cfg.select_on, self.best_map,
                     self.best_epoch + 1)
        return True

    # -- loop
    def train_epoch(self, epoch: int) -> dict[str, float]:
        from tqdm import tqdm

        cfg, device = self.cfg, self.device
        self.model.train()
        scaler = self.scaler
        sums: dict[str, torch.Tensor] = {}
        bar = tqdm(self.train_loader, desc=f"{self.name} epoch {epoch + 1}/{cfg.epochs}",
                   disable=not self.progress, leave=False)
        for images, targets, _ in bar:
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            valid = None
            if self.data.train.ignore is not None:  # unscored pairs: no loss, no memory count
                valid = targets >= 0
                targets = targets.clamp(min=0)
            with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                outputs = self.forward_model(images, targets)
                losses = self.criterion(outputs, targets, valid)
            if self.step_in_backward is not None:
                losses["total"].backward()        # every weight is stepped inside backward
            else:
                self.optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["total"]).backward()
                scaler.step(self.optimizer)
                scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0) + v.detach()
        n = max(self.steps_per_epoch, 1)
        return {k: float(v) / n for k, v in sums.items()}

    def score(self, loader: DataLoader, split: Split, desc: str) -> np.ndarray:
        """Scores of the evaluation weights on a split; with several processes each scores a
        shard and every process gets them all."""
        if self.dist.enabled:
            broadcast_state(self.eval_model)
        scores, _, indices = predict_with_indices(self.eval_model, loader, self.device,
                                                  self.amp_dtype, self.progress,
                                                  desc=f"{self.name} {desc}")
        if self.dist.enabled:
            scores = gather_predictions(scores, indices, len(split), self.device)
        return scores.numpy()

    def evaluate_ema(self) -> float:
        """mAP of the EMA weights on the selection split (validation by default)."""
        split = self.select_split
        scores = self.score(self.select_loader, split, self.cfg.select_on)
        return mean_ap(average_precision(scores, split.targets, split.ignore))

    def calibrate(self) -> tuple[float | None, list[float] | None]:
        """Validation mAP and per-label thresholds of the evaluation weights, the selected ones
        by now (None without a validation split)."""
        from salgl.calibration import calibrate_thresholds

        if self.data.val is None:
            return None, None
        loader = (self.select_loader if self.cfg.select_on == "val"
                  else self._loader(self.data.val, train=False))
        scores = self.score(loader, self.data.val, "val")
        val = self.data.val
        val_map = mean_ap(average_precision(scores, val.targets, val.ignore))
        return val_map, calibrate_thresholds(scores, val.targets, val.ignore).tolist()

    def run(self) -> TrainResult:
        from salgl.logging_live import open_live, publish

        if self.cfg.select_on == "test" and self.dist.main:
            log.warning("%s.select_on: test: the epoch is chosen and early stopping decided on "
                        "the test split (the paper's protocol); its test mAP is optimistic",
                        self.key)
        if self.dist.main:
            self._ensure_state_dir()
        self._barrier()
        resumed = self.try_resume()
        live = (open_live(self.live_staging, self.start_epoch if resumed else 0, self.live_dir)
                if self.live_dir and self.dist.main else None)
        if self.dist.main:
            log.info("%s", self.summary())
        cfg = self.cfg
        epoch = self.start_epoch - 1
        epoch_seconds: list[float] = []
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                torch.manual_seed(cfg.seed * 100003 + epoch)
                self.generator.manual_seed(cfg.seed * 100003 + epoch)
                if self.dist.enabled:
                    self.train_loader.sampler.set_epoch(epoch)
                started = time.perf_counter()
                losses = self.train_epoch(epoch)
                selection_map = self.evaluate_ema()
                seconds = time.perf_counter() - started
                epoch_seconds.append(seconds)
                improved = selection_map > self.best_map
                if improved:
                    self.best_map, self.best_epoch, self.stale = selection_map, epoch, 0
                    self.best_state = {k: v.detach().clone()
                                       for k, v in self.eval_model.state_dict().items()}
                else:
                    self.stale += 1
                lr = self.scheduler.get_last_lr()[0]
                say = log.info if self.dist.main else log.debug
                say("%s epoch %d/%d: loss %.3f (asl %.3f) lr %.2e %s mAP %.4f%s, %.0f s",
                    self.name, epoch + 1, cfg.epochs, losses["total"], losses["asl"], lr,
                    cfg.select_on, selection_map, " (best)" if improved else "", seconds)
                if live is not None:
                    # under live/: cannot collide with the train.<dataset>.* params
                    for k, v in losses.items():
                        live.log_metric(f"live/train/loss_{k}", v)
                    live.log_metric("live/train/lr", lr)
                    live.log_metric(f"live/{cfg.select_on}/mAP", selection_map)
                    live.log_metric(f"live/{cfg.select_on}/best_mAP", self.best_map)
                    live.next_step()
                stop = self.stale >= cfg.patience
                self.save_state(epoch)
                if live is not None:
                    publish(self.live_staging, self.live_dir)
                self._barrier()
                if stop:
                    if self.dist.main:
                        log.info("%s: no better %s mAP for %d epochs, stopping early",
                                 self.name, cfg.select_on, cfg.patience)
                    break
        finally:
            if live is not None:
                live.end()
        if self.best_state is not None:  # the selected epoch's EMA weights, once
            self.eval_model.load_state_dict(self.best_state)
        val_map, thresholds = self.calibrate()
        if self.dist.main:
            self.save_model(val_map, thresholds)
            if live is not None:
                publish(self.live_staging, self.live_dir)
            self.finish_state()
        self._barrier()
        return TrainResult(self.best_map, self.best_epoch, epoch + 1, self.start_epoch,
                           self.cfg.select_on, val_map, tuple(epoch_seconds))

    def _barrier(self) -> None:
        if self.dist.enabled:
            import torch.distributed as dist

            dist.barrier()

    def save_model(self, val_map: float | None, thresholds: list[float] | None) -> None:
        """The selected EMA weights (already in eval_model), with what selected them and the
        calibrated cuts."""
        model = self.eval_model
        mean, std = normalization_stats(self.cfg.normalization)
        checkpoint.save_model(
            self.model_out, model, self.data.labels,
            {"kind": self.cfg.normalization, "mean": list(mean), "std": list(std)},
            extra={"dataset": self.name, "data_fingerprint": self.data_fingerprint[:16],
                   "selected_on": self.cfg.select_on,
                   "selected_epoch": self.best_epoch + 1, "selection_mAP": self.best_map,
                   "val_mAP": val_map, "thresholds": thresholds,
                   "embedding": self.embed_info.get("source"), "train": to_dict(self.cfg)})

    def finish_state(self) -> None:
        """A finished run leaves no resume state and no staged curves."""
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        shutil.rmtree(self.live_staging, ignore_errors=True)


def train(name: str, cfg: TrainConfig, data: PreparedDataset, embed_dir: Path, model_out: Path,
          state_dir: Path, live_dir: Path | None = None, progress: bool = True) -> TrainResult:
    """Train SALGL on a prepared dataset and write ``model_out`` (best EMA weights)."""
    return Trainer(name, cfg, data, embed_dir, model_out, state_dir, live_dir, progress).run()
