"""Train BDFI on exported training tensors (see engine/zoo/README.md for the exact command).

    vigil-zoo train --model bdfi --data engine/zoo/data/ped2-train-128x192 \
        --epochs 10 --batch 8 --lr 1e-3 --seed 0 --out engine/zoo/checkpoints/ped2-bdfi.pt

Logs the mean of every loss term per epoch; saves a checkpoint (float32 state_dict + the config
+ provenance + the training state for --resume) after every epoch, so an interrupted run still
leaves a usable model and can be continued.
"""
from __future__ import annotations

import ast
import time

import torch

from ..checkpoint import continue_run, float_state, read, resume_record, save_checkpoint
from ..data import TripletSampler, load_index
from ..models.bdfi import BDFI, BDFIConfig, bdfi_losses, count_params, _gaussian_window
from ..options import parse_hw, trainer_parser
from ..training import command_line, device, optimise, run_record, seed_all, warmup_cosine

PROG = "vigil-zoo train --model bdfi"


def main(argv=None, prog=PROG):
    ap = trainer_parser(__doc__, prog, data_help="folder written by `vigil dataset export`", batch=8, threads=2,
                        set_help="override a BDFIConfig field, e.g. --set w_con=0.1")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--crop", type=parse_hw, default=(64, 96),
                    help="random training crop HxW ('none' = full frames)")
    args = ap.parse_args(argv)
    dev = device(args.device)

    rng = seed_all(args.seed, args.threads)

    geom = load_index(args.data)["geometry"]
    cfg = BDFIConfig(height=int(geom["height"]), width=int(geom["width"]))
    for kv in args.set:
        k, v = kv.split("=", 1)
        cur = getattr(cfg, k)
        setattr(cfg, k, tuple(ast.literal_eval(v)) if isinstance(cur, tuple) else type(cur)(v))
    model = BDFI(cfg)
    prior = read(args.resume) if args.resume else None
    if prior is not None:
        model.load_state_dict(prior["state_dict"])
    model.to(dev)
    sampler = TripletSampler(args.data, crop=args.crop)
    steps_per_epoch = len(sampler) // args.batch
    if args.max_steps:
        steps_per_epoch = min(steps_per_epoch, args.max_steps)
    total_steps = steps_per_epoch * args.epochs
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, min(200, total_steps // 10)))
    window = _gaussian_window().to(dev)
    first, history, command, wall0 = continue_run(prior, args.resume, {"opt": opt}, {"sched": sched}, rng)
    command = command or command_line(prog, argv)
    t0 = time.time() - wall0
    print(f"BDFI params={count_params(model)} triplets={len(sampler)} steps/epoch={steps_per_epoch} "
          f"crop={args.crop} cfg={cfg.to_dict()}", flush=True)
    print(f"command: {command}", flush=True)

    for epoch in range(first, args.epochs + 1):
        model.train()
        sums, n = {}, 0
        te = time.time()
        for i, (prev, cur, nxt) in enumerate(sampler.batches(args.batch, rng)):
            if i >= steps_per_epoch:
                break
            prev, cur, nxt = prev.to(dev), cur.to(dev), nxt.to(dev)
            out = model.forward_train(prev, nxt)
            loss, parts = bdfi_losses(model, out, cur, window)
            optimise(opt, sched, loss, parts, sums)
            n += 1
        means = {k: v / max(1, n) for k, v in sums.items()}
        history.append({"epoch": epoch, **means})
        wall = time.time() - t0
        print(f"epoch {epoch:3d}/{args.epochs} " + " ".join(f"{k}={v:.5f}" for k, v in means.items())
              + f" lr={sched.get_last_lr()[0]:.2e} epoch_s={time.time() - te:.0f} wall_s={wall:.0f}",
              flush=True)
        save(args, model, cfg, command, history, wall, epoch,
             resume_record(epoch, {"opt": opt}, {"sched": sched}, rng) if epoch < args.epochs else None)
    print(f"done: {args.epochs} epochs in {time.time() - t0:.0f} s -> {args.out}", flush=True)


def save(args, model, cfg, command, history, wall, epoch, resume):
    ckpt = {
        "state_dict": float_state(model),
        "config": cfg.to_dict(),
        "train": run_record(args, command, history, wall, epoch),
        "resume": resume,
    }
    save_checkpoint(args.out, ckpt)
