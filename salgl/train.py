"""The training recipe: AdamW + OneCycle, EMA, epoch selection and early stopping on
validation mAP, per-label thresholds calibrated on the validation split, resumable, DVCLive.

With ``select_on: val`` (the default) the test split is never read here: the evaluate stage
scores it once, with the selected weights. ``select_on: test`` is the paper's protocol.

Where each step lives: one epoch of training in salgl.engine, the selection in
salgl.selection, the resume state in salgl.resume, the device, precision and workers in
salgl.runtime. Each epoch reseeds from (seed, epoch), so a resumed run sees the same batches
as an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
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
    barrier,
    gather_rows,
    gather_scene_batch,
    init_from_env,
    lost_peers_as_error,
)
from salgl.ema import ModelEma, initial_share
from salgl.engine import score_split, train_one_epoch
from salgl.errors import SalglError
from salgl.losses import SalglCriterion
from salgl.metrics import average_precision, mean_ap
from salgl.model import BackboneModel, GatherFn, SalglConfig, create_model
from salgl.npy_files import load_npy
from salgl.resume import ResumeState, TrainingState
from salgl.runtime import autocast_dtype, keep_freed_memory, loader_workers, select_device
from salgl.selection import Selection
from salgl.step_in_backward import StepInBackward

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_map: float  # mAP on the selection split (val, or test under the paper's protocol)
    best_epoch: int
    epochs_run: int
    resumed_from: int
    selected_on: str = "val"
    val_map: float | None = None
    epoch_seconds: tuple[float, ...] = ()  # wall time of each epoch this process trained
    selection_maps: tuple[float, ...] = ()  # every epoch's selection mAP, resumed ones too


def check_batch(cfg: TrainConfig, train_images: int, list_file: Path, key: str) -> None:
    """Refuse a batch larger than the training split, before anything is written."""
    if cfg.batch_size > train_images:
        raise SalglError(f"{key}.batch_size: {cfg.batch_size} is larger than the training "
                         f"split ({train_images} images in {list_file}); lower it")


# A run whose EMA ends holding more than this share of its initial weights gets a warning.
EMA_INITIAL_SHARE_WARNING = 0.5


def check_schedule(cfg: TrainConfig, steps_per_epoch: int, key: str) -> None:
    """The one-cycle schedule's warm-up must last more than one optimiser step: at exactly
    one, PyTorch's scheduler divides by zero, and below it skips the warm-up altogether.
    An EMA that would end mostly at its start (a high decay over few steps) is warned of."""
    if cfg.warmup >= 1.0:
        raise SalglError(f"{key}.warmup: must be below 1 (the schedule needs a decay phase)")
    total = cfg.epochs * steps_per_epoch
    need = math.floor(1 / cfg.warmup) + 1
    if total < need:
        raise SalglError(
            f"{key}.epochs: {cfg.epochs} epoch(s) of {steps_per_epoch} step(s) make "
            f"{total} optimiser steps, too few for the one-cycle schedule with warmup "
            f"{cfg.warmup} (it needs at least {need}); raise epochs or lower batch_size")
    share = initial_share(cfg.ema_decay, cfg.ema_warmup, total)
    if share > EMA_INITIAL_SHARE_WARNING:
        log.warning("%s.ema_decay: after %d optimiser steps the EMA (decay %s%s) still holds "
                    "%.0f%% of the initial weights, and the selected model is that average; "
                    "set ema_warmup: true, lower ema_decay, or train longer", key, total,
                    cfg.ema_decay, ", no warm-up" if not cfg.ema_warmup else "", 100 * share)


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
    vectors = load_npy(vectors_path)
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
                key: str, gather: GatherFn | None = None) -> BackboneModel:
    """The model the settings ask for; ``gather`` collects the global batch for the
    co-occurrence update when several processes train."""
    embed_dim = None if info.get("source") == "random" else int(vectors.shape[1])
    mcfg = model_config(cfg, len(labels), embed_dim)
    embeddings = None if embed_dim is None else torch.from_numpy(vectors)
    model = create_model(mcfg, embeddings, pretrained=cfg.pretrained,
                         pretrained_path=cfg.pretrained_path, gather=gather)
    if cfg.head == "salgl" and model.feature_dim % cfg.encoder_heads:
        raise SalglError(f"{key}.encoder_heads: {cfg.encoder_heads} does not divide the "
                         f"backbone's feature width {model.feature_dim}")
    return model


def start_if_asked(model: BackboneModel, cfg: TrainConfig, labels: list[str], key: str,
                   main: bool):
    """With ``init_from``: the file's weights loaded into ``model`` (salgl.init_from), its
    one-line report said by the main process; the StartReport, else None. Its sha256 joins
    the resume fingerprint: a start file with other bytes is another run."""
    if not cfg.init_from:
        return None
    from salgl.init_from import start_from

    report = start_from(model, cfg.init_from, labels, cfg.normalization, key)
    if main:
        log.info("%s", report.line(key))
    return report


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device
                   ) -> torch.optim.Optimizer:
    """AdamW in one fused kernel per step (CUDA and CPU): no per-parameter Python loop and
    no list of temporaries as large as the model, which foreach would allocate."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def training_device(setting: str, dist: DistInfo, key: str) -> torch.device:
    """The device this process trains on (its own GPU under DDP)."""
    device = select_device(setting, f"{key}.device")
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    if device.type == "cpu":
        keep_freed_memory()
    return device


def check_data(cfg: TrainConfig, data: PreparedDataset, dist: DistInfo, name: str) -> Split:
    """Refuse settings the data cannot serve; the split that selects the epoch."""
    key = f"train.{name}"
    if cfg.batch_size % dist.world:
        raise SalglError(f"{key}.batch_size: the global batch {cfg.batch_size} is not "
                         f"divisible by the {dist.world} processes")
    check_batch(cfg, len(data.train), data.root / "train.tsv", key)
    if cfg.select_on == "val" and data.val is None:
        raise SalglError(f"{key}.select_on: val, but {data.root / 'val.tsv'} is "
                         f"missing (set prepare.{name}.val_fraction above 0 and rerun "
                         "prepare, or select on test, the paper's protocol)")
    check_images_exist(data.train.paths, data.root / "train.tsv")
    select_split = data.split(cfg.select_on)
    check_images_exist(select_split.paths, data.root / f"{cfg.select_on}.tsv")
    if data.val is not None and cfg.select_on != "val":
        check_images_exist(data.val.paths, data.root / "val.tsv")
    return select_split


def make_ema(model: torch.nn.Module, cfg: TrainConfig, main: bool) -> ModelEma | None:
    """The EMA lives on rank 0; other ranks receive its weights for the sharded evaluation."""
    return ModelEma(model, cfg.ema_decay, cfg.comat_ema, cfg.ema_warmup) if main else None


def wrap_for_training(model: torch.nn.Module, cfg: TrainConfig, dist: DistInfo,
                      device: torch.device) -> torch.nn.Module:
    """What batches go through: the model, wrapped by DDP and torch.compile as asked."""
    forward_model: torch.nn.Module = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [dist.local_rank] if device.type == "cuda" else None
        forward_model = DistributedDataParallel(model, device_ids=ids)
    if cfg.compile:
        forward_model = torch.compile(forward_model)
    return forward_model


def make_loader(split: Split, cfg: TrainConfig, train: bool, device: torch.device,
                dist: DistInfo, generator: torch.Generator) -> DataLoader:
    """Training batches (shuffled by ``generator``, or sharded under DDP) or evaluation
    batches of a split, each process taking its share of the global batch."""
    transform = build_transform(cfg.img_size, cfg.normalization, train, hflip=cfg.hflip,
                                cutout=cfg.cutout, randaugment=cfg.randaugment,
                                augment=cfg.augment)
    workers = loader_workers(device) if cfg.num_workers is None else cfg.num_workers
    targets = split.targets
    if train and split.ignore is not None:  # -1: left out of the loss (train_one_epoch)
        targets = np.where(split.ignore > 0, -1, targets.astype(np.int8))
    dataset = MultiLabelImages(split.paths, targets, transform)
    sampler = None
    if dist.enabled:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(dataset, dist.world, dist.rank, shuffle=train,
                                     seed=cfg.seed, drop_last=train)
    return DataLoader(
        dataset, batch_size=cfg.batch_size // dist.world, shuffle=train and sampler is None,
        sampler=sampler, drop_last=train and len(split) > cfg.batch_size,
        num_workers=workers, pin_memory=device.type == "cuda",
        generator=generator if train and sampler is None else None,
        persistent_workers=False)


def report_epoch(name: str, cfg: TrainConfig, live, epoch: int, losses: dict[str, float],
                 selection_map: float, improved: bool, lr: float,
                 seconds: float, main: bool) -> None:
    """The epoch's line in the log and its row in the training curves."""
    say = log.info if main else log.debug
    say("%s epoch %d/%d: loss %.3f (asl %.3f) lr %.2e %s mAP %.4f%s, %.0f s",
        name, epoch + 1, cfg.epochs, losses["total"], losses["asl"], lr,
        cfg.select_on, selection_map, " (best)" if improved else "", seconds)
    if live is not None:
        # Under live/: cannot collide with the train.<dataset>.* params. The step is the
        # epoch number as the log says it (from 1); the best-so-far is drawn from the mAP
        # series by the figures, not logged as a second copy of it.
        live.step = epoch + 1
        for k, v in losses.items():
            live.log_metric(f"live/train/loss_{k}", v)
        live.log_metric("live/train/lr", lr)
        live.log_metric(f"live/{cfg.select_on}/mAP", selection_map)
        live.next_step()


class Trainer:
    """One dataset's training run: ``run`` trains to the end (or resumes) and saves the model.

    The constructor checks the data and settings and builds everything a run needs (model,
    criterion, optimiser, schedule, EMA, loaders) before anything is written."""

    def __init__(self, name: str, cfg: TrainConfig, data: PreparedDataset, embed_dir: Path,
                 model_out: Path, state_dir: Path, live_dir: Path | None, progress: bool = True):
        self.name, self.cfg, self.data = name, cfg, data
        self.key = f"train.{name}"
        self.model_out, self.live_dir = model_out, live_dir
        self.dist: DistInfo = init_from_env(cfg.device)
        self.progress = progress and self.dist.main
        self.device = training_device(cfg.device, self.dist, self.key)
        self.select_split = check_data(cfg, data, self.dist, name)
        self.vectors, self.embed_info = load_label_vectors(embed_dir, data.labels)
        self.data_fingerprint = data_fingerprint(data)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, data.labels, self.vectors, self.embed_info, self.key,
                            gather=gather_scene_batch if self.dist.enabled else None)
        self.start = start_if_asked(model, cfg, data.labels, self.key, self.dist.main)
        self.model = model.to(self.device)
        self.resume_state = ResumeState(state_dir, fingerprint(
            cfg, self.data_fingerprint + getattr(self.start, "sha256", ""), self.vectors))
        self.model.set_channels_last(cfg.channels_last)
        self.model.set_recompute(cfg.recompute_stages, f"{self.key}.recompute_stages")
        self.criterion = SalglCriterion(cfg.gamma_neg, cfg.gamma_pos, cfg.clip, cfg.scene_weight,
                                        gather=gather_rows if self.dist.enabled else None,
                                        world=self.dist.world)
        self.forward_model = wrap_for_training(self.model, cfg, self.dist, self.device)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.amp_dtype = autocast_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
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
        self.ema = make_ema(self.model, cfg, self.dist.main)
        self.eval_model = self.ema.module if self.ema is not None else copy.deepcopy(self.model)
        self.selection = Selection(cfg.select_on)
        self.start_epoch = 0

    # -- set-up
    def _loader(self, split: Split, train: bool) -> DataLoader:
        return make_loader(split, self.cfg, train, self.device, self.dist, self.generator)

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

    # -- resume
    def _training_state(self) -> TrainingState:
        return TrainingState(self.model, self.ema, self.optimizer, self.scheduler, self.scaler,
                             self.selection)

    def save_state(self, epoch: int) -> None:
        if self.dist.main:
            self.resume_state.save(epoch, self._training_state())

    def try_resume(self) -> bool:
        start = self.resume_state.resume(self._training_state(), self.device)
        if start is None:
            return False
        self.start_epoch = start
        if self.dist.main:
            log.info("resuming %s from epoch %d (best %s mAP %.4f at epoch %d)", self.name,
                     start + 1, self.cfg.select_on, self.selection.best_map,
                     self.selection.best_epoch + 1)
        return True

    # -- the recipe
    def run(self) -> TrainResult:
        """Resume if a state is there; per epoch: train, score the selection split, keep the
        best EMA weights, save the resume state; then calibrate and write the model file."""
        from salgl.logging_live import publish

        cfg, main = self.cfg, self.dist.main
        live = self._begin()
        epoch, epoch_seconds = self.start_epoch - 1, []
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                started = time.perf_counter()
                losses = self.train_epoch(epoch)
                selection_map = self.evaluate_selection()
                epoch_seconds.append(time.perf_counter() - started)
                improved = self.selection.update(epoch, selection_map, self.eval_model)
                report_epoch(self.name, cfg, live, epoch, losses, selection_map, improved,
                             self.scheduler.get_last_lr()[0], epoch_seconds[-1], main)
                self.save_state(epoch)
                if live is not None:
                    publish(self.resume_state.live_staging, self.live_dir)
                barrier()
                if self.selection.exhausted(cfg.patience):
                    if main:
                        log.info("%s: no better %s mAP for %d epochs, stopping early",
                                 self.name, cfg.select_on, cfg.patience)
                    break
        finally:
            if live is not None:
                live.end()
        self.selection.restore(self.eval_model)  # the selected epoch's EMA weights, once
        val_map, thresholds = self.calibrate()
        if main:
            self.save_model(val_map, thresholds)
            if live is not None:
                publish(self.resume_state.live_staging, self.live_dir)
            self.resume_state.finish()
        barrier()
        return TrainResult(self.selection.best_map, self.selection.best_epoch, epoch + 1,
                           self.start_epoch, cfg.select_on, val_map, tuple(epoch_seconds),
                           tuple(self.selection.history))

    def _begin(self):
        """Warn about the paper's protocol, ready the state folder, resume if possible, say
        how the run trains; the DVCLive logger (rank 0 with a live folder), else None."""
        main = self.dist.main
        if self.cfg.select_on == "test" and main:
            log.warning("%s.select_on: test: the epoch is chosen and early stopping decided on "
                        "the test split (the paper's protocol); its test mAP is optimistic",
                        self.key)
        if main:
            self.resume_state.prepare()
        barrier()
        resumed = self.try_resume()
        if main:
            log.info("%s", self.summary())
        if not (self.live_dir and main):
            return None
        from salgl.logging_live import open_live

        return open_live(self.resume_state.live_staging, self.start_epoch if resumed else 0,
                         self.live_dir)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch, reseeded from (seed, epoch) so that a resumed run repeats it exactly."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed * 100003 + epoch)
        self.generator.manual_seed(cfg.seed * 100003 + epoch)
        if self.dist.enabled:
            self.train_loader.sampler.set_epoch(epoch)
        return train_one_epoch(
            self.model, self.criterion, self.train_loader, self.optimizer, self.scheduler,
            self.device, scaler=self.scaler, forward_model=self.forward_model, ema=self.ema,
            amp_dtype=self.amp_dtype, step_in_backward=self.step_in_backward,
            masked_targets=self.data.train.ignore is not None,
            desc=f"{self.name} epoch {epoch + 1}/{cfg.epochs}", progress=self.progress)

    def _score(self, loader: DataLoader, split: Split, desc: str) -> np.ndarray:
        return score_split(self.eval_model, loader, len(split), self.device, self.dist,
                           self.amp_dtype, self.progress, f"{self.name} {desc}")

    def evaluate_selection(self) -> float:
        """mAP of the EMA weights on the selection split (validation by default)."""
        split = self.select_split
        scores = self._score(self.select_loader, split, self.cfg.select_on)
        return mean_ap(average_precision(scores, split.targets, split.ignore))

    def calibrate(self) -> tuple[float | None, list[float] | None]:
        """Validation mAP and per-label thresholds of the evaluation weights, the selected ones
        by now (None without a validation split)."""
        from salgl.calibration import calibrate_thresholds

        val = self.data.val
        if val is None:
            return None, None
        loader = (self.select_loader if self.cfg.select_on == "val"
                  else self._loader(val, train=False))
        scores = self._score(loader, val, "val")
        val_map = mean_ap(average_precision(scores, val.targets, val.ignore))
        cuts = calibrate_thresholds(scores, val.targets, val.ignore, labels=self.data.labels)
        return val_map, cuts.tolist()

    # -- outputs
    def save_model(self, val_map: float | None, thresholds: list[float] | None) -> None:
        """The selected EMA weights (in eval_model), what selected them, the calibrated cuts."""
        mean, std = normalization_stats(self.cfg.normalization)
        checkpoint.save_model(
            self.model_out, self.eval_model, self.data.labels,
            {"kind": self.cfg.normalization, "mean": list(mean), "std": list(std)},
            extra={"dataset": self.name, "data_fingerprint": self.data_fingerprint[:16],
                   **self.selection.model_metadata(), "val_mAP": val_map,
                   "thresholds": thresholds, "embedding": self.embed_info.get("source"),
                   "init_from": self.start.metadata() if self.start else None,
                   "train": to_dict(self.cfg)})


def train(name: str, cfg: TrainConfig, data: PreparedDataset, embed_dir: Path, model_out: Path,
          state_dir: Path, live_dir: Path | None = None, progress: bool = True) -> TrainResult:
    """Train SALGL on a prepared dataset and write ``model_out`` (best EMA weights). With
    several processes, losing another one (a dead or silent node) ends this one with a
    SalglError that says how to resume."""
    with lost_peers_as_error(state_dir):
        return Trainer(name, cfg, data, embed_dir, model_out, state_dir, live_dir,
                       progress).run()
