"""The training loop: preloaded inputs, batch augmentation, AdamW + one-cycle LR.

Checkpoints (`last.pt`) are written after every epoch so a killed run resumes
where it stopped (`resume=True`); the final weights go to `model.pt` with the
configuration and history, which `cbmir export` and `cbmir evaluate` read.
On CPUs with bf16 support, autocast in bf16 plus channels-last memory about
doubles the throughput of GoogLeNet; weights and the loss stay fp32.
"""
from __future__ import annotations

import json
import platform
import random
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cbmir.core.preprocess import PREPROCESS_VERSION

from . import datasets
from .augment import augment_batch
from .inference import CHECKPOINT_FILE, MODEL_FILE, embed_inputs, pick_device
from .losses import InstanceContrastLoss, build_loss
from .metrics import retrieval_metrics
from .networks import build_model
from .recipe import RECIPE


@dataclass
class TrainConfig:
    manifest: str
    out: str
    train_splits: list[str] = field(default_factory=list)
    val_splits: list[str] = field(default_factory=list)
    epochs: int = RECIPE["epochs"]
    batch_size: int = RECIPE["batch_size"]
    lr: float = RECIPE["lr"]
    weight_decay: float = RECIPE["weight_decay"]
    input_size: int = RECIPE["input_size"]
    dim: int = RECIPE["dim"]
    gem_p: float = RECIPE["gem_p"]
    loss: str = RECIPE["loss"]
    augment: bool = RECIPE["augment"]
    seed: int = RECIPE["seed"]
    weights: str | None = None
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16
    threads: int = 0
    cache_dir: str | None = None
    limit: int = 0  # use only N training images, stratified by label (tests, smoke runs)
    progress: bool = True
    precise_bn: bool = RECIPE["precise_bn"]  # re-estimate BatchNorm statistics on un-augmented inputs at the end
    instance_weight: float = 0.0  # lambda of the instance (NT-Xent) term beside the label loss; 0 = off
    instance_temperature: float = 0.1
    data_device: str = "auto"  # where the preloaded inputs live: auto (the training device), cpu


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def use_bf16(config: TrainConfig, device: torch.device) -> bool:
    if config.precision != "auto":
        return config.precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} CPU, {torch.get_num_threads()} torch threads"


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, inputs: torch.Tensor, device: torch.device,
                          batch_size: int = 64, progress: bool = False) -> None:
    """Exact BatchNorm statistics over `inputs` ("precise BN").

    Running averages collected during training describe augmented batches of
    earlier weights; retrieval embeds un-augmented images with the final ones.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    model.train()
    for start in tqdm(range(0, len(inputs), batch_size), desc="precise BN", unit="batch",
                      disable=not progress):
        model.label_embedding(inputs[start:start + batch_size].to(device).contiguous(
            memory_format=torch.channels_last))
    for norm, momentum in zip(norms, saved):
        norm.momentum = momentum
    model.eval()


def data_device_for(config: TrainConfig, device: torch.device) -> torch.device:
    """Where the preloaded inputs are kept: on the training device unless told otherwise, so
    indexing, augmentation and the forward pass never wait on host-to-device copies."""
    if config.data_device not in ("auto", "cpu"):
        raise ValueError(f"data_device must be auto or cpu, not {config.data_device!r}")
    return device if config.data_device == "auto" else torch.device("cpu")


def training_step(model, criterion, batch: torch.Tensor, labels: torch.Tensor,
                  generator: torch.Generator, config: TrainConfig, bf16: bool,
                  instance: InstanceContrastLoss | None = None) -> torch.Tensor:
    """Loss of one batch: augmentation on the batch's own device, label loss, and with
    `instance` a second augmented view of every image and the NT-Xent term between the views."""
    device = next(model.parameters()).device
    batch = batch.to(device, non_blocking=True)
    views = [augment_batch(batch, generator) if config.augment else batch]
    if instance is not None:
        views.append(augment_batch(batch, generator) if config.augment else batch)
    stacked = torch.cat(views) if len(views) > 1 else views[0]
    stacked = stacked.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        embeddings = model.label_embedding(stacked)
    embeddings = embeddings.float()
    loss = criterion(embeddings, labels.repeat(len(views)))
    if instance is not None:
        first, second = embeddings.chunk(2)
        loss = loss + config.instance_weight * instance(first, second)
    return loss


def _save(path: Path, payload: dict) -> None:
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    temporary.replace(path)


def fit(config: TrainConfig, resume: bool = False) -> dict:
    """Train per `config`; returns the summary also written to OUT/train.json."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    device = pick_device(config.device)
    bf16 = use_bf16(config, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels

    records = datasets.read_manifest(config.manifest)
    train_records = datasets.training_records(records, config.train_splits, config.limit)
    val_records = datasets.select(records, config.val_splits) if config.val_splits else []
    codec = datasets.LabelCodec([r.label for r in train_records])
    data_device = data_device_for(config, device)
    train_inputs = torch.from_numpy(datasets.load_inputs(
        train_records, config.input_size, config.cache_dir, config.progress)).to(data_device)
    train_labels = torch.from_numpy(codec.encode([r.label for r in train_records])).to(device)
    val_inputs = (datasets.load_inputs(val_records, config.input_size, config.cache_dir,
                                       config.progress) if val_records else None)

    model = build_model(config.dim, config.gem_p, weights=config.weights).to(device)
    model = model.to(memory_format=torch.channels_last)
    criterion = build_loss(config.loss, len(codec), config.dim).to(device)
    instance = (InstanceContrastLoss(config.instance_temperature)
                if config.instance_weight > 0 else None)
    parameters = [{"params": [p for n, p in model.named_parameters() if n != "pool.p"]},
                  {"params": [model.pool.p], "weight_decay": 0.0},
                  {"params": list(criterion.parameters()), "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in parameters if g["params"]], lr=config.lr,
                                  weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train_records) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
        pct_start=0.15, div_factor=20.0, final_div_factor=200.0)

    start_epoch, history, elapsed = 0, [], 0.0
    checkpoint_path = out / CHECKPOINT_FILE
    if resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        criterion.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history, elapsed = state["epoch"], state["history"], state["elapsed_s"]
        if state["config"]["epochs"] == config.epochs:
            scheduler.load_state_dict(state["scheduler"])
        else:  # more/fewer epochs asked: follow the new schedule from the step reached
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(min(start_epoch * steps_per_epoch, scheduler.total_steps - 1)):
                    scheduler.step()
        torch.set_rng_state(state["rng"])
        print(f"resumed from {checkpoint_path} after epoch {start_epoch}")

    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(start_epoch, config.epochs):
        generator.manual_seed(config.seed * 1000 + epoch)
        model.train()
        began = time.time()
        order = torch.randperm(len(train_records), generator=generator).to(data_device)
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}",
                   unit="batch", disable=not config.progress)
        for step in bar:
            chosen = order[step * config.batch_size:(step + 1) * config.batch_size]
            loss = training_step(model, criterion, train_inputs[chosen],
                                 train_labels[chosen.to(device)], generator, config, bf16, instance)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.detach())  # kept on the device: no sync per step on a GPU
            if config.progress and step % 20 == 19:
                bar.set_postfix(loss=f"{float(torch.stack(losses[-20:]).mean()):.4f}")
        losses = torch.stack(losses).float().cpu().numpy() if losses else np.zeros(0)
        seconds = time.time() - began
        elapsed += seconds
        entry = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": round(seconds, 1),
                 "images_per_s": round(steps_per_epoch * config.batch_size / seconds, 1),
                 "gem_p": round(float(model.pool.p.detach()), 4)}
        if val_inputs is not None:
            vectors = embed_inputs(model, val_inputs, device=device, progress=config.progress)
            keys = [r.key for r in val_records]
            scores = retrieval_metrics(vectors, [r.label for r in val_records], vectors,
                                       [r.label for r in val_records], keys, keys,
                                       [r.patient_id for r in val_records],
                                       [r.patient_id for r in val_records])
            entry.update({"val_mAP": round(scores["mAP"], 4), "val_P@10": round(scores["P@10"], 4)})
        history.append(entry)
        print(json.dumps(entry), flush=True)
        _save(checkpoint_path, {"model": model.state_dict(), "loss": criterion.state_dict(),
                                "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(), "epoch": epoch + 1,
                                "history": history, "elapsed_s": elapsed,
                                "rng": torch.get_rng_state(), "config": asdict(config),
                                "labels": codec.labels})

    summary = {"config": asdict(config), "labels": codec.labels, "history": history,
               "train_images": len(train_records), "train_seconds": round(elapsed, 1),
               "train_label_counts": dict(sorted(Counter(r.label for r in train_records).items())),
               "device": str(device), "hardware": hardware_description(device),
               "bf16_autocast": bf16, "preprocess_version": PREPROCESS_VERSION,
               "torch": torch.__version__}
    if config.precise_bn and history:
        recalibrate_batchnorm(model, train_inputs, device, progress=config.progress)
    model = model.to(memory_format=torch.contiguous_format)
    _save(out / MODEL_FILE, {"model": model.state_dict(), **summary})
    (out / "train.json").write_text(json.dumps(summary, indent=2))
    if history:
        from .report_plots import training_curves

        training_curves(history, out / "training_curves.png")
    return summary
