"""Train USTN-DSC (`ustn-dsc` recipe; see engine/zoo/README.md, "USTN-DSC", for the commands
and results).

    vigil-zoo train --model ustn-dsc --data engine/zoo/data/ped2-train-128x192 \
        --epochs 5 --crop 64x128 --batch 8 --lr 1e-3 --seed 0 --threads 1 --holdout 16 \
        --out engine/zoo/checkpoints/ped2-ustn-dsc.pt

Samples: every clip of T = 9 consecutive frames inside a training video (never across a video
boundary); input = its keyframes 0, 4, 8, target = all 9 frames. Loss: Charbonnier on the
restored frames + Charbonnier on the adjacent-frame differences (`ustn_dsc.restoration_losses`).
Adam, linear warm-up then cosine decay to 5 % of `--lr`.

The only augmentation is a random crop (`--crop`, the same place in all 9 frames): the network
is fully convolutional and its attention is windowed, so a crop that is a multiple of
`USTNConfig.min_multiple` (64 for the default config) sees exactly the layers of a full frame at
a third of the cost. No flips and no temporal reversal (on Ped2 the layout and the walking
directions are part of normality, and the paper uses neither).

`--holdout ID` keeps a normal training video out of training and reports its restoration error
after every epoch (full frames, clips starting every `--val-stride` frames): the mean PSNR of
all restored frames and the mean clip score PSNR (the paper's score: PSNR of the clip's worst
restored frame). That number, never the test AUC, is what compares configurations
(`--device cuda` runs the same recipe on a GPU for such comparisons; the shipped model is
trained on the CPU).

Deterministic for a seed and thread count (seeded torch and numpy generators,
`torch.use_deterministic_algorithms`). A checkpoint (float32 state_dict + config + provenance:
command, per-epoch loss means and held-out errors, wall time, torch version) and the training
state for `--resume` are written atomically after every epoch.
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from ..checkpoint import continue_run, float_state, read, resume_record, save_checkpoint
from ..data import load_videos, load_index, _Sampler
from ..models.ustn_dsc import USTNDSC, USTNConfig, restoration_losses, param_groups
from ..options import config_overrides, parse_hw, trainer_parser
from ..training import command_line, device, lr_schedule

PROG = "vigil-zoo train --model ustn-dsc"


class ClipSampler(_Sampler):
    """Clips of `clip` consecutive frames within each video, as ([B, 3, h, w] keyframes,
    [B, clip, h, w] frames); `exclude` drops videos by id (the held-out video)."""

    def __init__(self, folder, clip, keyframes, crop=None, exclude=(), only=None):
        vids = [(v, a) for v, a in load_videos(folder, mmap=True)
                if v not in set(exclude) and (only is None or v in set(only))]
        if not vids:
            raise ValueError(f"{folder}: no video left after the selection")
        self.video_ids = [v for v, _ in vids]
        self.videos = [np.asarray(a[:, 0]) for _, a in vids]           # [T, H, W] in memory
        self.clip, self.key, self.crop = clip, list(keyframes), crop
        self.items = [(vi, t) for vi, a in enumerate(self.videos) for t in range(a.shape[0] - clip + 1)]

    def make_batch(self, items, rng):
        clips = []
        for vi, t in items:
            c = self.videos[vi][t:t + self.clip]
            if self.crop is not None:
                ch, cw = self.crop
                y = int(rng.integers(0, c.shape[1] - ch + 1))
                x = int(rng.integers(0, c.shape[2] - cw + 1))
                c = c[:, y:y + ch, x:x + cw]
            clips.append(c)
        clips = torch.from_numpy(np.ascontiguousarray(np.stack(clips), np.float32))
        return clips[:, self.key], clips


@torch.no_grad()
def clip_psnr(pred, clip):
    """[B, T] PSNR (peak 1, images mapped from [-1, 1] to [0, 1]) of every restored frame."""
    mse = (((pred.double() - clip.double()) / 2.0) ** 2).mean(dim=(2, 3)).clamp_min(1e-12)
    return (10.0 * torch.log10(1.0 / mse)).cpu()


@torch.no_grad()
def validate(model, sampler, stride, batch=8):
    """Held-out restoration error on full frames: mean PSNR of all restored frames, mean clip
    score PSNR (worst frame of the clip) and the mean loss."""
    model.eval()
    items = [(vi, t) for vi, t in sampler.items if t % stride == 0]
    ps, ws, ls = [], [], []
    for s in range(0, len(items), batch):
        key, clip = sampler.make_batch(items[s:s + batch], None)
        dev = next(model.parameters()).device
        key, clip = key.to(dev), clip.to(dev)
        pred = model(key)
        p = clip_psnr(pred, clip)
        ps.append(p.mean(1))
        ws.append(p.min(1).values)
        ls.append(restoration_losses(model.cfg, pred, clip)[0].item() * len(key))
    model.train()
    return {"val_psnr": round(float(torch.cat(ps).mean()), 4), "val_score_psnr": round(float(torch.cat(ws).mean()), 4),
            "val_loss": round(sum(ls) / len(items), 6), "val_clips": len(items)}


def save_model(path, model, prov, resume):
    save_checkpoint(path, {"state_dict": float_state(model), "config": model.cfg.to_dict(), "provenance": prov,
                           "torch": torch.__version__, "resume": resume})


def main(argv=None, prog=PROG):
    ap = trainer_parser(__doc__, prog, data_help="folder written by `vigil dataset export`", batch=8, threads=1,
                        set_help="override a USTNConfig field, e.g. --set window=4 --set dims=(48,96)",
                        device_help="torch device (the shipped model: cpu; 'cuda' only for comparing "
                                    "configurations quickly, it is not bit-identical to cpu)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=5e-4, help="peak Adam learning rate")
    ap.add_argument("--crop", type=parse_hw, default=None,
                    help="random training crop HxW, multiples of USTNConfig.min_multiple (default 'none' = full frames)")
    ap.add_argument("--holdout", nargs="*", default=[], metavar="ID",
                    help="normal training video(s) kept out of training for the validation error")
    ap.add_argument("--val-stride", type=int, default=4, help="held-out clips start every N frames")
    ap.add_argument("--log-every", type=int, default=50, help="also print every N-th step (0: never)")
    args = ap.parse_args(argv)
    dev = device(args.device)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    geom = load_index(args.data)["geometry"]
    cfg = USTNConfig(height=int(geom["height"]), width=int(geom["width"]), **config_overrides(USTNConfig, args.set))
    model = USTNDSC(cfg)
    prior = read(args.resume) if args.resume else None
    if prior is not None:
        model.load_state_dict(prior["state_dict"])
    model.to(dev)
    if args.crop and (args.crop[0] % cfg.min_multiple or args.crop[1] % cfg.min_multiple):
        raise SystemExit(f"--crop must be a multiple of {cfg.min_multiple} for this config")
    sampler = ClipSampler(args.data, cfg.clip, cfg.keyframes, args.crop, exclude=args.holdout)
    val = ClipSampler(args.data, cfg.clip, cfg.keyframes, None, only=args.holdout) if args.holdout else None
    steps = len(sampler) // args.batch
    if args.max_steps:
        steps = min(steps, args.max_steps)
    total = steps * args.epochs
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(total))
    first, history, command, wall0 = continue_run(prior, args.resume, {"opt": opt}, {"sched": sched}, rng,
                                                  record="provenance")
    command = command or command_line(prog, argv)
    print(f"USTN-DSC params {param_groups(model)} cfg={cfg.to_dict()}", flush=True)
    print(f"command: {command}", flush=True)
    print(f"clips={len(sampler)} from {len(sampler.video_ids)} videos (held out: {args.holdout or 'none'}) "
          f"steps/epoch={steps} epochs={args.epochs} batch={args.batch} crop={args.crop} lr={args.lr:g}", flush=True)

    t0 = time.time() - wall0
    for epoch in range(first, args.epochs + 1):
        model.train()
        sums, n, te = {}, 0, time.time()
        for i, (key, clip) in enumerate(sampler.batches(args.batch, rng)):
            if i >= steps:
                break
            key, clip = key.to(dev), clip.to(dev)
            ts = time.time()
            pred = model(key)
            loss, parts = restoration_losses(cfg, pred, clip)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            parts = {"total": loss.detach(), **parts, "psnr": clip_psnr(pred, clip).mean()}
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
            if args.log_every and (i + 1) % args.log_every == 0:
                print(f"  step {i + 1}/{steps} " + " ".join(f"{k}={float(v):.4f}" for k, v in parts.items())
                      + f" s/step={time.time() - ts:.3f}", flush=True)
        es = time.time() - te
        rec = {"epoch": epoch, **{k: round(v / max(1, n), 6) for k, v in sums.items()},
               "epoch_s": round(es, 1), "s_per_step": round(es / max(1, n), 4)}
        if val is not None:
            tv = time.time()
            rec.update(validate(model, val, args.val_stride))
            rec["val_s"] = round(time.time() - tv, 1)
        history.append(rec)
        wall = time.time() - t0
        print(f"epoch {epoch}/{args.epochs} " + " ".join(f"{k}={v}" for k, v in rec.items() if k != "epoch")
              + f" lr={sched.get_last_lr()[0]:.2e} wall_s={wall:.0f}", flush=True)
        save_model(args.out, model, {
            "epochs": epoch, "epochs_planned": args.epochs, "data": args.data, "batch": args.batch,
            "lr": args.lr, "seed": args.seed, "crop": list(args.crop) if args.crop else None,
            "holdout": args.holdout, "train_videos": sampler.video_ids, "max_steps": args.max_steps,
            "threads": args.threads, "device": args.device, "command": command, "torch": torch.__version__,
            "wall_s": round(wall, 1), "history": history},
            resume_record(epoch, {"opt": opt}, {"sched": sched}, rng) if epoch < args.epochs else None)
    print(f"done in {time.time() - t0:.0f} s -> {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)", flush=True)


if __name__ == "__main__":
    main()
