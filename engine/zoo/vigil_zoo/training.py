"""What every trainer shares: the learning-rate schedule, per-stage seeding, the command line
recorded in the checkpoint, the device."""
from __future__ import annotations

import numpy as np


def warmup_cosine(total_steps, warm):
    """A LambdaLR factor per step: linear warm-up over `warm` steps, then cosine decay to 5 % of
    the peak at `total_steps`."""
    return lambda s: (s + 1) / warm if s < warm else \
        0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * (s - warm) / max(1, total_steps - warm)))


def lr_schedule(total_steps):
    """Short linear warm-up (attention layers and fresh memories dislike a full learning rate
    at step 0), then cosine decay to 5 % of the peak; a LambdaLR factor per step."""
    return warmup_cosine(total_steps, max(1, min(100, total_steps // 10)))


def seed_all(seed, threads):
    """Torch threads, every global generator seeded, deterministic kernels; returns the run's
    numpy Generator (batches, crops)."""
    import random
    import torch
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)


def seed_stage(seed, stages, stage, device="cpu"):
    """Per-stage generators (numpy, torch): stages run separately or in one `all` run give the
    same result. The torch generator lives on `device` where the trainer samples on the device."""
    import torch
    k = stages.index(stage)
    torch.manual_seed(seed * 1000 + k)
    gen = torch.Generator(device=device).manual_seed(seed * 1000 + 100 + k)
    return np.random.default_rng([seed, k]), gen


def command_line(prog: str, argv) -> str:
    """The command as the user would type it again, recorded in the checkpoint's provenance."""
    import shlex
    import sys
    argv = sys.argv[1:] if argv is None else argv
    return " ".join([prog] + [shlex.quote(a) for a in argv])


def device(name: str):
    """torch.device(name), refusing cuda where there is none instead of failing mid-run."""
    import torch
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: torch {torch.__version__} sees no CUDA device")
    return dev


def stage_plan(todo, stages, resume):
    """The stages of `todo` still to run when resuming after (resume["stage"], resume["epoch"]):
    earlier stages are done; the resumed one continues (its trainer skips the finished epochs)."""
    if resume is None:
        return list(todo)
    k = stages.index(resume["stage"])
    return [s for s in todo if stages.index(s) >= k]


def optimise(opt, sched, loss, parts, sums):
    """One optimiser and scheduler step on `loss`; adds the loss terms and the total to the
    epoch's running sums."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    for k, v in parts.items():
        sums[k] = sums.get(k, 0.0) + float(v.detach())
    sums["total"] = sums.get("total", 0.0) + float(loss.detach())


def run_record(args, command, history, wall, epoch, **extra) -> dict:
    """The provenance of a single-stage run as its checkpoint keeps it ("train"): what
    `vigil-zoo export` copies into [provenance], and the history a resumed run continues."""
    import torch
    return {"data": args.data, "epochs": epoch, "epochs_planned": args.epochs, "batch": args.batch,
            "lr": args.lr, "seed": args.seed, "crop": list(args.crop) if args.crop else None, **extra,
            "command": command, "torch": torch.__version__, "wall_s": round(wall, 1),
            "threads": args.threads, "device": args.device, "history": history}
