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

import time

import torch

from ..checkpoint import continue_run, float_state, read, resume_record, save_checkpoint
from ..data import FrameFlowSampler, load_index
from ..models.maam_net import MAAMNet, MAAMConfig, maam_losses, count_params
from ..options import config_overrides, parse_hw, trainer_parser
from ..training import command_line, device, optimise, run_record, seed_all, warmup_cosine

PROG = "vigil-zoo train --model maam-net"


def main(argv=None, prog=PROG):
    ap = trainer_parser(__doc__, prog, data_help="folder written by `vigil dataset export --flow`", batch=8, threads=2,
                        set_help="override a MAAMConfig field, e.g. --set memory_slots=20 --set w_lat=0.01")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--crop", type=parse_hw, default=None,
                    help="random training crop HxW, multiples of 16 (default 'none' = full frames)")
    ap.add_argument("--videos", type=int, nargs="*", help="train on these video indices only (smoke tests)")
    args = ap.parse_args(argv)
    dev = device(args.device)

    rng = seed_all(args.seed, args.threads)

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
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, max(1, min(200, total_steps // 10))))
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
            optimise(opt, sched, loss, parts, sums)
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
        "train": run_record(args, command, history, wall, epoch, videos=args.videos, max_steps=args.max_steps),
        "resume": resume,
    }
    save_checkpoint(args.out, ckpt)
