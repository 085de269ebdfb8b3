"""Train STM-AE (`stm-ae` recipe) in three stages (see engine/zoo/README.md, "STM-AE", for the
commands).

    vigil-zoo train --model stm-ae --data engine/zoo/data/ped2-train-128x192 --stage all \
        --epochs-app 2 --epochs-mot 2 --epochs-main 6 --batch 8 --crop 96x128 --threads 1 \
        --seed 0 --out engine/zoo/checkpoints/ped2-stm-ae.pt

Stages (`--stage appearance|motion|main|all`; `all` runs the three in this order):

  appearance  the appearance AE as a denoiser: one frame with `noise_p` (20 %) salt-and-pepper
              noise in, the clean frame out, L2 loss. Samples: every frame of every video.
  motion      the motion AE: one flow (dx, dy, pixels) in, the same flow out, L1 loss.
              Samples: every flow t -> t+1 of every video.
  main        both stream encoders frozen (eval mode, no gradient); trains the spatial/temporal
              fusion, the prediction decoder and the PatchGAN discriminator, and writes the two
              memory pools (top-k rule) after every step. Samples: every t >= n_frames of every
              video: frames t-4..t-1, flows t-4->t-3, t-3->t-2, t-2->t-1, target frame t
              (never the flow t-1 -> t, which would show the target's motion).

A later stage starts from `--init CKPT` (or from the checkpoint written by the earlier stage of
the same `--stage all` run); `main` refuses stream encoders that were not pre-trained.

Each stage seeds its own generators from (seed, stage), so running the stages one by one gives
the same weights as `--stage all`; deterministic for a seed and thread count. A checkpoint
(float32 state_dict incl. memory items + config + per-stage provenance and per-epoch loss means)
is written after every epoch, with the training state (optimisers, schedulers, generators) that
`--resume CKPT` continues from: the same command plus `--resume` finishes the interrupted stage
and runs the stages after it. Logged per epoch: the mean of every loss term, s/step, wall time.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import continue_stage, float_state, load, read, resume_of, resume_record, save_checkpoint
from ..data import load_flows, load_index
from ..models.stm_ae import (STMAE, STMConfig, salt_and_pepper, generator_losses,
                             discriminator_loss, param_groups)
from ..options import config_overrides, parse_hw, trainer_parser
from ..training import command_line, device, lr_schedule, seed_stage, stage_plan

PROG = "vigil-zoo train --model stm-ae"

STAGES = ("appearance", "motion", "main")


# --------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------

class STMSampler:
    """Frames, flows or windows of the exported videos, never across a video boundary.

    kind = "frame":  I_t, t = 0 .. T-1                             -> ([B,1,h,w],)
    kind = "flow":   F_{t->t+1}, t = 0 .. T-2                      -> ([B,2,h,w],)
    kind = "window": frames t-n..t-1 as channels, the n-1 flows between them, frame t
                     (t = n .. T-1)                                 -> ([B,n,h,w], [B,2(n-1),h,w], [B,1,h,w])

    The only augmentation is a random crop (`crop`, same place in every tensor of a sample): the
    networks are fully convolutional and the memories are read per position. No flips and no
    temporal reversal (a flipped or reversed sample would need its flows transformed, and on
    Ped2 the layout and walking directions are part of normality).
    """

    def __init__(self, folder, kind, n_frames=4, crop=None, videos=None):
        vids = load_flows(folder, mmap=True)
        if videos is not None:
            vids = [vids[i] for i in videos]
        self.frames = [a for _, a, _ in vids]
        self.flows = [f for _, _, f in vids]
        self.kind, self.n, self.crop = kind, n_frames, crop
        if kind == "frame":
            self.items = [(vi, t) for vi, a in enumerate(self.frames) for t in range(a.shape[0])]
        elif kind == "flow":
            self.items = [(vi, t) for vi, f in enumerate(self.flows) for t in range(f.shape[0])]
        elif kind == "window":
            self.items = [(vi, t) for vi, a in enumerate(self.frames) for t in range(n_frames, a.shape[0])]
        else:
            raise ValueError(kind)

    def __len__(self):
        return len(self.items)

    def batches(self, batch_size, rng: np.random.Generator):
        order = rng.permutation(len(self.items))
        for s in range(0, len(order) - batch_size + 1, batch_size):  # drop the last partial batch
            yield self.make_batch([self.items[i] for i in order[s:s + batch_size]], rng)

    def _crop(self, h, w, rng):
        if self.crop is None:
            return slice(None), slice(None)
        ch, cw = self.crop
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        return slice(y, y + ch), slice(x, x + cw)

    def make_batch(self, items, rng):
        cols = None
        for vi, t in items:
            a, f = self.frames[vi], self.flows[vi]
            ys, xs = self._crop(a.shape[-2], a.shape[-1], rng)
            if self.kind == "frame":
                parts = (a[t, :, ys, xs],)
            elif self.kind == "flow":
                parts = (f[t, :, ys, xs],)
            else:
                n = self.n
                fr = a[t - n:t, 0, ys, xs]                                   # [n, h, w]
                fl = f[t - n:t - 1, :, ys, xs]                               # [n-1, 2, h, w]
                fl = fl.reshape(2 * (n - 1), *fl.shape[-2:])                 # (dx, dy) per flow, oldest first
                parts = (fr, fl, a[t, :, ys, xs])
            if cols is None:
                cols = [[] for _ in parts]
            for c, p in zip(cols, parts):
                c.append(np.asarray(p, np.float32))
        return tuple(torch.from_numpy(np.ascontiguousarray(np.stack(c))) for c in cols)


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------

def run_epochs(args, stage, model, sampler, epochs, step_fn, params, lr, extra_opt=None, on_epoch=None):
    # salt_and_pepper draws its noise on the CPU from `gen`, whatever the device
    rng, gen = seed_stage(args.seed, STAGES, stage)
    steps = len(sampler) // args.batch
    if args.max_steps:
        steps = min(steps, args.max_steps)
    total = steps * epochs
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999) if stage != "main" else (0.5, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(total))
    scheds = [sched]
    if extra_opt is not None:
        scheds.append(torch.optim.lr_scheduler.LambdaLR(extra_opt, lr_schedule(total)))
    opts = {"opt": opt, "opt_d": extra_opt} if extra_opt is not None else {"opt": opt}
    sched_roles = dict(zip(("sched", "sched_d"), scheds))
    first, history, wall0 = continue_stage(args.resume_rec, args.stages_info, stage, opts, sched_roles, rng, gen)
    t0 = time.time() - wall0
    print(f"[{stage}] samples={len(sampler)} steps/epoch={steps} epochs={epochs} batch={args.batch} "
          f"crop={args.crop} lr={lr:g}", flush=True)
    for epoch in range(first, epochs + 1):
        model.train()
        sums, n, te = {}, 0, time.time()
        for i, batch in enumerate(sampler.batches(args.batch, rng)):
            if i >= steps:
                break
            batch = tuple(b.to(args.dev) for b in batch)
            ts = time.time()
            parts = step_fn(batch, opt, gen)
            for s in scheds:
                s.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
            if args.log_every and (i + 1) % args.log_every == 0:
                print(f"  [{stage}] step {i + 1}/{steps} " + " ".join(f"{k}={v:.4f}" for k, v in parts.items())
                      + f" s/step={time.time() - ts:.3f}", flush=True)
        means = {k: v / max(1, n) for k, v in sums.items()}
        es = time.time() - te
        rec = {"epoch": epoch, **{k: round(v, 6) for k, v in means.items()}, "epoch_s": round(es, 1),
               "s_per_step": round(es / max(1, n), 4)}
        history.append(rec)
        print(f"[{stage}] epoch {epoch}/{epochs} " + " ".join(f"{k}={v:.5f}" for k, v in means.items())
              + f" lr={sched.get_last_lr()[0]:.2e} epoch_s={es:.0f} s/step={es / max(1, n):.3f} "
              f"wall_s={time.time() - t0:.0f}", flush=True)
        if on_epoch:
            on_epoch(epoch, epochs, history, time.time() - t0,
                     resume_record(epoch, opts, sched_roles, rng, gen, stage=stage))
    return history


def stage_appearance(args, model, save):
    c = model.cfg
    sampler = STMSampler(args.data, "frame", crop=args.crop, videos=args.videos)
    params = list(model.app_enc.parameters()) + list(model.app_dec.parameters())

    def step(batch, opt, gen):
        (clean,) = batch
        noisy = salt_and_pepper(clean, c.noise_p, gen)
        loss = F.mse_loss(model.app_autoencode(noisy), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"denoise_l2": loss.detach()}
    run_epochs(args, "appearance", model, sampler, args.epochs_app, step, params, args.lr, on_epoch=save)


def stage_motion(args, model, save):
    sampler = STMSampler(args.data, "flow", crop=args.crop, videos=args.videos)
    params = list(model.mot_enc.parameters()) + list(model.mot_dec.parameters())

    def step(batch, opt, gen):
        (flow,) = batch
        loss = (model.mot_autoencode(flow) - flow).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"flow_l1": loss.detach()}
    run_epochs(args, "motion", model, sampler, args.epochs_mot, step, params, args.lr, on_epoch=save)


def stage_main(args, model, save):
    c = model.cfg
    model.freeze_streams()
    sampler = STMSampler(args.data, "window", n_frames=c.n_frames, crop=args.crop, videos=args.videos)
    opt_d = torch.optim.Adam(model.disc.parameters(), lr=args.lr_d, betas=(0.5, 0.999))

    def step(batch, opt, gen):
        frames, flows, target = batch
        last = frames[:, -1:]
        out = model.forward_train(frames, flows)
        parts = {}
        if c.w_adv > 0:  # discriminator first, then the generator against the updated D
            l_d = discriminator_loss(model, out["pred"], target, last)
            opt_d.zero_grad(set_to_none=True)
            l_d.backward()
            opt_d.step()
            parts["d"] = l_d.detach()
        total, gp = generator_losses(model, out, target, last)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        model.write_memories(out)        # after the read: this step's reads used the old items
        return {"total": total.detach(), **{k: v.detach() for k, v in gp.items()}, **parts}
    run_epochs(args, "main", model, sampler, args.epochs_main, step, model.generator_parameters(),
               args.lr, extra_opt=opt_d, on_epoch=save)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

def save_model(path, model, stages_info, resume):
    ckpt = {"state_dict": float_state(model), "config": model.cfg.to_dict(), "stages": stages_info,
            "torch": torch.__version__, "resume": resume}
    save_checkpoint(path, ckpt)


def main(argv=None, prog=PROG):
    ap = trainer_parser(__doc__, prog, data_help="folder written by `vigil dataset export --flow`", batch=8, threads=1,
                        set_help="override an STMConfig field, e.g. --set w_adv=0 --set skip_levels=1")
    ap.add_argument("--stage", choices=STAGES + ("all",), default="all")
    ap.add_argument("--epochs-app", type=int, default=2)
    ap.add_argument("--epochs-mot", type=int, default=2)
    ap.add_argument("--epochs-main", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam lr of the AEs and of the main generator")
    ap.add_argument("--lr-d", type=float, default=1e-4, help="Adam lr of the discriminator")
    ap.add_argument("--init", help="start from this checkpoint (weights, memories, config, stage records)")
    ap.add_argument("--crop", type=parse_hw, default=None,
                    help="random training crop HxW, multiples of 8 (default 'none' = full frames)")
    ap.add_argument("--log-every", type=int, default=0, help="also print every N-th step")
    ap.add_argument("--videos", type=int, nargs="*", help="train on these video indices only (smoke tests)")
    args = ap.parse_args(argv)
    args.dev = device(args.device)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    geom = load_index(args.data)["geometry"]
    over = config_overrides(STMConfig, args.set)
    stages_info = {}
    start = args.resume or args.init
    ckpt = read(start) if start else None
    args.resume_rec = resume_of(ckpt, args.resume) if args.resume else None
    if ckpt is not None:
        model, _ = load("stm-ae", start, ckpt, over, for_training=True)
        cfg = model.cfg
        stages_info = dict(ckpt.get("stages", {}))
    else:
        torch.manual_seed(args.seed)
        cfg = STMConfig(height=int(geom["height"]), width=int(geom["width"]), **over)
        model = STMAE(cfg)
    model.to(args.dev)
    args.stages_info = stages_info
    if args.crop and (args.crop[0] % 8 or args.crop[1] % 8):
        raise SystemExit("--crop must be a multiple of 8")
    command = command_line(prog, argv)
    print(f"STM-AE params {param_groups(model)} cfg={cfg.to_dict()}", flush=True)
    print(f"command: {command}", flush=True)

    todo = STAGES if args.stage == "all" else (args.stage,)
    # a resumed stage keeps the command that started it
    commands = {s: stages_info[s]["command"] for s in stages_info} if args.resume else {}
    for stage in stage_plan(todo, STAGES, args.resume_rec):
        if stage == "main":
            missing = [s for s in ("appearance", "motion") if s not in stages_info]
            if missing:
                raise SystemExit(f"--stage main needs pre-trained stream encoders; this model has no "
                                 f"{' / '.join(missing)} stage (run those first or pass --init)")
        t0 = time.time()

        def save(epoch, epochs, history, wall, resume, stage=stage):
            stages_info[stage] = {
                "epochs": epoch, "epochs_planned": epochs, "data": args.data, "batch": args.batch,
                "lr": args.lr, "lr_d": args.lr_d if stage == "main" else None, "seed": args.seed,
                "crop": list(args.crop) if args.crop else None, "videos": args.videos,
                "max_steps": args.max_steps, "threads": args.threads, "device": args.device,
                "command": commands.get(stage, command),
                "torch": torch.__version__, "wall_s": round(wall, 1), "history": history,
            }
            finished = stage == todo[-1] and epoch == epochs
            save_model(args.out, model, stages_info, None if finished else resume)
        {"appearance": stage_appearance, "motion": stage_motion, "main": stage_main}[stage](args, model, save)
        print(f"[{stage}] done in {time.time() - t0:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
