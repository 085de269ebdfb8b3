"""Train HF2-VAD (`hf2vad` recipe) in two stages (see engine/zoo/README.md, "HF2-VAD", for the
commands).

    vigil-zoo train --model hf2vad --data engine/zoo/data/ped2-train-128x192 --stage all \
        --epochs-memae 6 --epochs-cvae 4 --batch 64 --threads 1 --seed 0 \
        --out engine/zoo/checkpoints/ped2-hf2vad.pt

The folder must hold the object cubes (`vigil dataset export --flow --objects`). Samples are
every object cube of every training video (objects are independent samples; shuffled across
videos).

Stages (`--stage memae|cvae|all`; `all` runs both in this order):

  memae  ML-MemAE-SC reconstructs the 4 flows of each cube: L2 + w_entropy x entropy of the
         memory addressing weights.
  cvae   ML-MemAE-SC frozen (eval mode, no gradient); the CVAE predicts frame t from frames
         t-4..t-1, conditioned on the flows *reconstructed* by ML-MemAE-SC: w_frame L2 +
         w_grad gradient loss + w_kl KL(q || p); z sampled from the posterior.

After the last stage (and whenever a stage ends) the script scores every training object with
the final model (eval mode, posterior mean): S_r = sum of squared flow-reconstruction errors,
S_p = sum of squared frame-prediction errors, and stores their mean and (population) standard
deviation in the checkpoint (`score_stats`); the evaluation and the package z-score with them.
With `--holdout ID...` those videos are left out of training and of the statistics, and their
losses and mean S_r / S_p are reported (model selection on normal data, never on test labels).

A later stage starts from `--init CKPT` (or from the earlier stage of the same `all` run); each
stage seeds its own generators from (seed, stage), so running the stages one by one gives the
same weights as `--stage all`; deterministic for a seed and thread count. The checkpoint
(float32 state_dict + config + per-stage provenance with per-epoch loss means and wall time) is
written atomically after every epoch, with the training state (optimiser, scheduler, generators)
that `--resume CKPT` continues from: the same command plus `--resume` finishes the interrupted
stage, runs the stages after it and the statistics.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..checkpoint import continue_stage, float_state, load, read, resume_of, resume_record, save_checkpoint
from ..data import ObjectCubeSampler, load_index
from ..models.hf2vad import (HF2VAD, HF2VADConfig, memae_losses, cvae_losses, object_errors,
                             param_groups)
from ..options import config_overrides, trainer_parser
from ..training import command_line, device, lr_schedule, seed_stage, stage_plan

PROG = "vigil-zoo train --model hf2vad"

STAGES = ("memae", "cvae")


@torch.no_grad()
def score_objects(model, sampler, batch=256):
    """S_r, S_p (float64 [M]) and the mean losses of every object of `sampler`, in eval mode
    with the posterior mean (the deployed forward pass)."""
    model.eval()
    c = model.cfg
    dev = next(model.parameters()).device
    srs, sps = [], []
    for s in range(0, len(sampler), batch):
        cubes = torch.from_numpy(np.ascontiguousarray(sampler.cubes[s:s + batch])).to(dev)
        flows = torch.from_numpy(np.ascontiguousarray(sampler.flows[s:s + batch])).to(dev)
        recon, pred = model(cubes[:, :c.clip_hist], flows)
        sr, sp = object_errors(recon, flows, pred, cubes[:, c.clip_hist:])
        srs.append(sr.cpu().numpy())
        sps.append(sp.cpu().numpy())
    return np.concatenate(srs), np.concatenate(sps)


def stats_of(sr, sp):
    return {"sr_mean": float(sr.mean()), "sr_std": float(sr.std()),
            "sp_mean": float(sp.mean()), "sp_std": float(sp.std()), "objects": int(sr.size)}


def run_stage(args, stage, model, sampler, epochs, save):
    c = model.cfg
    # the CVAE samples its latent noise on the device, from `gen`
    rng, gen = seed_stage(args.seed, STAGES, stage, device=args.dev)
    steps = len(sampler) // args.batch
    if args.max_steps:
        steps = min(steps, args.max_steps)
    total = steps * epochs
    if stage == "memae":
        params = list(model.memae.parameters())
    else:
        model.freeze_memae()
        params = list(model.cvae.parameters())
    lr = args.lr_memae if stage == "memae" else args.lr_cvae
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(total))
    first, history, wall0 = continue_stage(args.resume_rec, args.stages_info, stage, {"opt": opt}, {"sched": sched},
                                           rng, gen)
    t0 = time.time() - wall0
    print(f"[{stage}] objects={len(sampler)} steps/epoch={steps} epochs={epochs} batch={args.batch} "
          f"lr={lr:g}", flush=True)
    for epoch in range(first, epochs + 1):
        model.train()
        sums, n, te = {}, 0, time.time()
        for i, (cubes, flows) in enumerate(sampler.batches(args.batch, rng)):
            if i >= steps:
                break
            cubes, flows = cubes.to(args.dev), flows.to(args.dev)
            if stage == "memae":
                recon, weights = model.memae.forward_train(flows)
                loss, parts = memae_losses(c, recon, flows, weights)
            else:
                with torch.no_grad():
                    recon = model.memae(flows)
                pred, qm, pm = model.cvae.forward_train(cubes[:, :c.clip_hist], recon, gen)
                loss, parts = cvae_losses(c, pred, cubes[:, c.clip_hist:], qm, pm)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            parts = {"total": loss.detach(), **parts}
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
            if args.log_every and (i + 1) % args.log_every == 0:
                print(f"  [{stage}] step {i + 1}/{steps} " + " ".join(f"{k}={float(v):.5f}" for k, v in parts.items()),
                      flush=True)
        means = {k: v / max(1, n) for k, v in sums.items()}
        es = time.time() - te
        rec = {"epoch": epoch, **{k: round(v, 6) for k, v in means.items()}, "epoch_s": round(es, 1),
               "s_per_step": round(es / max(1, n), 4)}
        history.append(rec)
        print(f"[{stage}] epoch {epoch}/{epochs} " + " ".join(f"{k}={v:.5f}" for k, v in means.items())
              + f" lr={sched.get_last_lr()[0]:.2e} epoch_s={es:.0f} s/step={es / max(1, n):.3f} "
              f"wall_s={time.time() - t0:.0f}", flush=True)
        save(epoch, epochs, history, time.time() - t0,
             resume_record(epoch, {"opt": opt}, {"sched": sched}, rng, gen, stage=stage))
    return history


def save_model(path, model, stages_info, score_stats=None, holdout=None, objects=None, resume=None):
    ckpt = {"state_dict": float_state(model), "config": model.cfg.to_dict(), "stages": stages_info,
            "score_stats": score_stats, "holdout": holdout, "objects": objects, "torch": torch.__version__,
            "resume": resume}
    save_checkpoint(path, ckpt)


def main(argv=None, prog=PROG):
    ap = trainer_parser(__doc__, prog, data_help="folder written by `vigil dataset export --flow --objects`", batch=64, threads=1,
                        set_help="override an HF2VADConfig field, e.g. --set num_slots=128 --set mem_temperature=1")
    ap.add_argument("--stage", choices=STAGES + ("all", "stats"), default="all",
                    help="'stats' trains nothing: it recomputes the z-score statistics of an --init "
                         "checkpoint over --data (e.g. a re-export with other [objects] parameters)")
    ap.add_argument("--epochs-memae", type=int, default=6)
    ap.add_argument("--epochs-cvae", type=int, default=4)
    ap.add_argument("--lr-memae", type=float, default=1e-3)
    ap.add_argument("--lr-cvae", type=float, default=1e-3)
    ap.add_argument("--init", help="start from this checkpoint (weights, config, stage records)")
    ap.add_argument("--log-every", type=int, default=0, help="also print every N-th step")
    ap.add_argument("--videos", type=int, nargs="*", help="train on these video indices only (smoke tests)")
    ap.add_argument("--holdout", nargs="*", default=[], metavar="ID",
                    help="leave these training videos out (model selection on held-out normal data)")
    args = ap.parse_args(argv)
    args.dev = device(args.device)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    over = config_overrides(HF2VADConfig, args.set)
    stages_info = {}
    start = args.resume or args.init
    ckpt = read(start) if start else None
    args.resume_rec = resume_of(ckpt, args.resume) if args.resume else None
    if ckpt is not None:
        model, _ = load("hf2vad", start, ckpt, over, for_training=True)
        cfg = model.cfg
        stages_info = dict(ckpt.get("stages", {}))
        if sorted(ckpt.get("holdout") or []) != sorted(args.holdout):
            raise SystemExit(f"--holdout {args.holdout} differs from the --init checkpoint's {ckpt.get('holdout')}")
    else:
        torch.manual_seed(args.seed)
        cfg = HF2VADConfig(**over)
        model = HF2VAD(cfg)
    model.to(args.dev)
    args.stages_info = stages_info
    # the extractor's parameters of the cubes trained on: the package's [objects] table must
    # match them, and a later stage must not silently train on a re-export with other ones
    objects = load_index(args.data).get("objects")
    if args.stage == "stats" and not args.init:
        raise SystemExit("--stage stats needs --init (the checkpoint whose statistics to recompute)")
    if start and args.stage != "stats" and ckpt.get("objects") not in (None, objects):
        raise SystemExit(f"{args.data} was exported with other object parameters than the --init "
                         f"checkpoint's data:\n  {objects}\n  {ckpt.get('objects')}")
    sampler = ObjectCubeSampler(args.data, videos=args.videos, exclude=args.holdout)
    if sampler.cubes.shape[-1] != cfg.cube:
        raise SystemExit(f"the data has {sampler.cubes.shape[-1]}-pixel cubes, the model expects {cfg.cube}")
    held = ObjectCubeSampler(args.data, only=args.holdout) if args.holdout else None
    command = command_line(prog, argv)
    print(f"HF2-VAD params {param_groups(model)} cfg={cfg.to_dict()}", flush=True)
    print(f"training videos {sampler.video_ids} ({len(sampler)} objects)"
          + (f", held out {held.video_ids} ({len(held)} objects)" if held else ""), flush=True)
    print(f"command: {command}", flush=True)

    todo = {"all": STAGES, "stats": ()}.get(args.stage, (args.stage,))
    if args.stage == "stats":
        stages_info["stats"] = {"data": args.data, "objects": objects, "command": command,
                                "objects_before": ckpt.get("objects"), "torch": torch.__version__,
                                "wall_s": 0.0}
    if "cvae" in todo and "memae" not in todo and "memae" not in stages_info:
        raise SystemExit("--stage cvae needs a trained ML-MemAE-SC (run --stage memae first or pass --init)")
    score_stats = None
    # a resumed stage keeps the command that started it
    commands = {s: stages_info[s]["command"] for s in stages_info} if args.resume else {}
    for stage in stage_plan(todo, STAGES, args.resume_rec):
        t0 = time.time()

        def save(epoch, epochs, history, wall, resume, stage=stage):
            stages_info[stage] = {
                "epochs": epoch, "epochs_planned": epochs, "data": args.data, "batch": args.batch,
                "lr": args.lr_memae if stage == "memae" else args.lr_cvae, "seed": args.seed,
                "videos": args.videos, "holdout": args.holdout, "max_steps": args.max_steps,
                "threads": args.threads, "device": args.device, "command": commands.get(stage, command),
                "torch": torch.__version__, "wall_s": round(wall, 1), "history": history,
            }
            save_model(args.out, model, stages_info, None, args.holdout, objects, resume)
        epochs = args.epochs_memae if stage == "memae" else args.epochs_cvae
        run_stage(args, stage, model, sampler, epochs, save)
        print(f"[{stage}] done in {time.time() - t0:.0f} s -> {args.out}", flush=True)

    # z-score statistics of the final model over the training objects
    ts = time.time()
    sr, sp = score_objects(model, sampler)
    score_stats = stats_of(sr, sp)
    score_stats["wall_s"] = round(time.time() - ts, 1)
    print(f"score stats over {sr.size} training objects: S_r {score_stats['sr_mean']:.3f} +- "
          f"{score_stats['sr_std']:.3f}, S_p {score_stats['sp_mean']:.3f} +- {score_stats['sp_std']:.3f} "
          f"({score_stats['wall_s']:.0f} s)", flush=True)
    if held is not None:
        hr, hp = score_objects(model, held)
        score_stats["holdout"] = {"videos": held.video_ids, **stats_of(hr, hp),
                                  "flow_mse": float(hr.mean() / (cfg.flow_ch * cfg.cube ** 2)),
                                  "frame_mse": float(hp.mean() / (cfg.img_channels * cfg.cube ** 2))}
        h = score_stats["holdout"]
        zr = (hr - score_stats["sr_mean"]) / score_stats["sr_std"]
        zp = (hp - score_stats["sp_mean"]) / score_stats["sp_std"]
        h["z_sr_p95"], h["z_sr_p99"] = (float(np.percentile(zr, q)) for q in (95, 99))
        h["z_sp_p95"], h["z_sp_p99"] = (float(np.percentile(zp, q)) for q in (95, 99))
        print(f"held out, z of the objects' S_r: p95 {h['z_sr_p95']:.3f} p99 {h['z_sr_p99']:.3f}; of S_p: "
              f"p95 {h['z_sp_p95']:.3f} p99 {h['z_sp_p99']:.3f}", flush=True)
        print(f"held out {held.video_ids} ({hr.size} objects): S_r {h['sr_mean']:.3f} (flow MSE "
              f"{h['flow_mse']:.5f}), S_p {h['sp_mean']:.3f} (frame MSE {h['frame_mse']:.5f}); mean z "
              f"{(h['sr_mean'] - score_stats['sr_mean']) / score_stats['sr_std']:.3f} / "
              f"{(h['sp_mean'] - score_stats['sp_mean']) / score_stats['sp_std']:.3f}", flush=True)
    save_model(args.out, model, stages_info, score_stats, args.holdout, objects)
    wall = sum(s["wall_s"] for s in stages_info.values())
    print(f"training wall time (all stages in this checkpoint): {wall:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
