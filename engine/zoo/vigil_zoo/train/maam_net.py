"""Train MAAM-Net on exported training frames and flows (see engine/zoo/README.md for the exact command).

    vigil-zoo train --model maam-net --data engine/zoo/data/ped2-train-128x192 \
        --epochs 20 --batch 8 --lr 1e-3 --seed 0 --out engine/zoo/checkpoints/ped2-maam-net.pt

The folder must hold the flows (`vigil dataset export --flow`, index.json "flow_file"). Samples
are (frame t, flow t->t+1) for t = 0 .. T-2 of every training video. Logs the mean of every loss
term per epoch (app = L2 frame, mot = L1 flow, spa = addressing entropy, lat = margin latent
loss; cos and active are diagnostics: mean cos(z, z_hat) and mean number of memory items read
per position); saves a checkpoint (float32 state_dict + the config + provenance + the training
state for --resume) after every epoch, so an interrupted run still leaves a usable model and can
be continued.
"""
from __future__ import annotations

import random
import time

import numpy as np
import torch

from ..checkpoint import continue_run, float_state, read, resume_record, save_checkpoint
from ..data import FrameFlowSampler, load_index
from ..models.maam_net import MAAMNet, MAAMConfig, maam_losses, count_params
from ..options import add_device_resume, config_overrides, parse_hw, parser
from ..training import command_line, device

PROG = "vigil-zoo train --model maam-net"


def main(argv=None, prog=PROG):
    ap = parser(__doc__, prog)
    ap.add_argument("--data", required=True, help="folder written by `vigil dataset export --flow`")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="checkpoint path (.pt)")
    ap.add_argument("--crop", type=parse_hw, default=None,
                    help="random training crop HxW, multiples of 16 (default 'none' = full frames)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0, help="stop each epoch after N steps (smoke tests)")
    ap.add_argument("--videos", type=int, nargs="*", help="train on these video indices only (smoke tests)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a MAAMConfig field, e.g. --set memory_slots=20 --set w_lat=0.01")
    add_device_resume(ap)
    args = ap.parse_args(argv)
    dev = device(args.device)

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    rng = np.random.default_rng(args.seed)

    geom = load_index(args.data)["geometry"]
    cfg = MAAMConfig(height=int(geom["height"]), width=int(geom["width"]), **config_overrides(MAAMConfig, args.set))
    if args.crop and (args.crop[0] % cfg.total_stride or args.crop[1] % cfg.total_stride):
        raise SystemExit(f"--crop must be a multiple of the total stride {cfg.total_stride}")
    model = MAAMNet(cfg)
    prior = read(args.resume) if args.resume else None
    if prior is not None:
        model.load_state_dict(prior["state_dict"])
    model.to(dev)
    sampler = FrameFlowSampler(args.data, crop=args.crop, videos=args.videos)
    steps_per_epoch = len(sampler) // args.batch
    if args.max_steps:
        steps_per_epoch = min(steps_per_epoch, args.max_steps)
    total_steps = steps_per_epoch * args.epochs
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    # short warm-up, then cosine decay to 5% of the peak learning rate
    warm = max(1, min(200, total_steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else
        0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * (s - warm) / max(1, total_steps - warm))))
    first, history, command, wall0 = continue_run(prior, args.resume, {"opt": opt}, {"sched": sched}, rng)
    command = command or command_line(prog, argv)
    t0 = time.time() - wall0
    print(f"MAAM-Net params={count_params(model)} samples={len(sampler)} steps/epoch={steps_per_epoch} "
          f"crop={args.crop} cfg={cfg.to_dict()}", flush=True)
    print(f"command: {command}", flush=True)

    for epoch in range(first, args.epochs + 1):
        model.train()
        sums, n = {}, 0
        te = time.time()
        for i, (frame, flow) in enumerate(sampler.batches(args.batch, rng)):
            if i >= steps_per_epoch:
                break
            frame, flow = frame.to(dev), flow.to(dev)
            out = model.forward_train(frame)
            loss, parts = maam_losses(model, out, frame, flow)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["total"] = sums.get("total", 0.0) + float(loss.detach())
            n += 1
        means = {k: v / max(1, n) for k, v in sums.items()}
        epoch_s = time.time() - te
        history.append({"epoch": epoch, **means, "epoch_s": round(epoch_s, 1)})
        wall = time.time() - t0
        print(f"epoch {epoch:3d}/{args.epochs} " + " ".join(f"{k}={v:.5f}" for k, v in means.items())
              + f" lr={sched.get_last_lr()[0]:.2e} epoch_s={epoch_s:.0f} "
              f"s/step={epoch_s / max(1, n):.3f} wall_s={wall:.0f}", flush=True)
        save(args, model, cfg, command, history, wall, epoch,
             resume_record(epoch, {"opt": opt}, {"sched": sched}, rng) if epoch < args.epochs else None)
    print(f"done: {args.epochs} epochs in {time.time() - t0:.0f} s -> {args.out}", flush=True)


def save(args, model, cfg, command, history, wall, epoch, resume):
    ckpt = {
        "state_dict": float_state(model),
        "config": cfg.to_dict(),
        "train": {
            "data": args.data, "epochs": epoch, "epochs_planned": args.epochs, "batch": args.batch,
            "lr": args.lr, "seed": args.seed, "crop": list(args.crop) if args.crop else None,
            "videos": args.videos, "max_steps": args.max_steps,
            "command": command, "torch": torch.__version__, "wall_s": round(wall, 1),
            "threads": args.threads, "device": args.device, "history": history,
        },
        "resume": resume,
    }
    save_checkpoint(args.out, ckpt)
