"""Training throughput (images/s) of the project's network, loss and augmentation (issue 12).

Random inputs, so it needs no data and runs on any machine. Two loops, alternated
in blocks (ABAB...) so drifting background load hits both:
- `legacy`: the loop before issue 12 (augmentation on the host tensor, then copied
  to the device; the loss read back with `float()` after every step);
- `current`: `cbmir_train.training.training_step` (inputs kept on the training
  device, augmentation there, no per-step read-back).
On a CPU both do the same arithmetic, so the figures must match (no regression);
on a GPU `current` is the one to size batches with, e.g.
`--device cuda --batch-size 256,1024`. Wall and process CPU time are both reported:
on a shared CPU the CPU-seconds per image are the steadier figure.
"""
from __future__ import annotations

import argparse
import time

import torch

from common import environment, write_results

from cbmir_train.augment import augment_batch
from cbmir_train.losses import build_loss
from cbmir_train.networks import build_model
from cbmir_train.training import TrainConfig, training_step, use_bf16


def legacy_step(model, criterion, inputs, labels, generator, device, bf16):
    batch = augment_batch(inputs, generator)
    batch = batch.to(device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        embeddings = model(batch)
    return criterion(embeddings.float(), labels.to(device))


def measure(mode: str, size: int, batch_size: int, steps: int, device: torch.device,
            bf16: bool, instance_weight: float) -> dict:
    torch.manual_seed(0)
    model = build_model(128, 3.0).to(device).to(memory_format=torch.channels_last).train()
    criterion = build_loss("proxy", 3, 128).to(device)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(criterion.parameters()), lr=1e-3)
    config = TrainConfig(manifest="-", out="-", batch_size=batch_size, input_size=size,
                         instance_weight=instance_weight)
    instance = None
    if instance_weight > 0:
        from cbmir_train.losses import InstanceContrastLoss

        instance = InstanceContrastLoss()
    home = device if mode == "current" else torch.device("cpu")
    inputs = torch.randn(batch_size * 4, 1, size, size).to(home)
    labels = torch.randint(0, 3, (batch_size * 4,)).to(device)
    generator = torch.Generator().manual_seed(0)

    def one(step: int):
        chosen = torch.arange(step % 4 * batch_size, (step % 4 + 1) * batch_size)
        if mode == "current":
            return training_step(model, criterion, inputs[chosen.to(home)], labels[chosen.to(device)],
                                 generator, config, bf16, instance)
        return legacy_step(model, criterion, inputs[chosen], labels[chosen.to(device)], generator,
                           device, bf16)

    losses = []
    for step in range(steps + 1):
        if step == 1:  # the first step (kernel selection, allocations) is not timed
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter(), time.process_time()
        loss = one(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if mode == "legacy":
            float(loss.detach())
        else:
            losses.append(loss.detach())
    if losses:
        float(torch.stack(losses).mean())
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    images = steps * batch_size
    return {"mode": mode, "batch_size": batch_size, "images": images,
            "images_per_s": round(images / wall, 1),
            "cpu_ms_per_image": round(1000 * cpu / images, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", default="32", help="comma-separated batch sizes")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per block")
    parser.add_argument("--rounds", type=int, default=3, help="ABAB rounds")
    parser.add_argument("--instance-weight", type=float, default=0.0)
    parser.add_argument("--modes", default="legacy,current")
    parser.add_argument("--name", default="train-throughput-cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    env = environment()
    device = torch.device(args.device)
    bf16 = use_bf16(TrainConfig(manifest="-", out="-"), device)
    rows = []
    for batch_size in (int(b) for b in args.batch_size.split(",")):
        for _ in range(args.rounds):
            for mode in args.modes.split(","):
                rows.append(measure(mode, args.size, batch_size, args.steps, device, bf16,
                                    args.instance_weight))
                print(rows[-1], flush=True)
    lines = [f"Device {device} ({args.threads} torch threads), {args.size} px, bf16 autocast {bf16}, "
             f"instance weight {args.instance_weight}; {args.steps} timed steps per block, "
             f"{args.rounds} alternating rounds.", "",
             "| mode | batch | images/s (median) | CPU ms/image (median) |", "|---|---|---|---|"]
    for batch_size in sorted({r["batch_size"] for r in rows}):
        for mode in args.modes.split(","):
            chosen = [r for r in rows if r["mode"] == mode and r["batch_size"] == batch_size]
            rate = sorted(r["images_per_s"] for r in chosen)[len(chosen) // 2]
            cpu = sorted(r["cpu_ms_per_image"] for r in chosen)[len(chosen) // 2]
            lines.append(f"| {mode} | {batch_size} | {rate} | {cpu} |")
    write_results(args.name, env, {"rows": rows, "bf16": bf16}, lines)


if __name__ == "__main__":
    main()
