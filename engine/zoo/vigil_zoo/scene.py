"""`vigil-zoo scene`: one command from a camera's normal footage to a model package for it.

    vigil-zoo scene --frames DIR --model NAME --out PKG [--schedule tiny|paper] [--epochs N]
                    [--max-steps N] [--device cpu|cuda] [--resume] [--vigil PATH]
                    [--fps 10] [--false-alarms-per-hour 1]

DIR holds normal footage of the scene: one subfolder of frames per clip (DIR/<clip>/*.png|jpg, the
layout of `vigil calib collect --out DIR` (DIR/frames/<clip>/) and of a dataset split such as
Ped2's training/frames), or a flat folder of frames (one clip). Steps, each recorded in the work
folder PKG-work/ so that `--resume` continues after the last finished one:

 1. split   the last ~20 % of the clips (at least one) are held out as validation footage; with a
            single clip, the last 20 % of its frames. Nothing is ever chosen on labels.
 2. tensors `vigil dataset export` of both parts: the runtime's own preprocessing (geometry, the
            engine's Farneback flow for maam-net / stm-ae / hf2vad, object cubes for hf2vad), with
            the [flow] / [objects] parameters of the shipped package engine/models/ped2-NAME.
 3. train   the model's own trainer (`vigil-zoo train --model NAME`), schedule `paper` (the
            shipped packages' commands) or `tiny` (a smoke test), on `--device`; interrupted runs
            continue from the trainer's checkpoint (`--resume`).
 4. select  after every epoch of the last training stage the checkpoint is kept and its training
            loss on the held-out clips computed (no labels: the footage is normal by assumption);
            where the model has a pseudo-anomaly scorer (`vigil-zoo select`: bdfi), the held-out
            clips are also made pseudo-anomalous (a stretch played too fast, a patch slid across)
            and the epoch and the score's fusion weights with the best AUC on them are exported;
            otherwise the epoch with the lowest validation loss.
 5. export  `vigil-zoo export --model NAME` (model.onnx + model.toml, onnxruntime-vs-PyTorch check
            on held-out inputs).
 6. calib   `vigil calib scores PKG` on the training part.
 7. report  the validation clips replayed through the daemon's own pipeline (`vigil demo --model
            PKG --frames CLIP --scores`: the deployed raw and normalised score of every frame, and
            the events at the default thresholds), written as PKG-report/report.{json,md} and
            scores.png: score quantiles, the `on` threshold for a target false-alarm rate, the
            expected false alarms per hour at the default thresholds, the validation-loss curve.

The package is an ordinary one: `vigil check` and `vigil run` take it unchanged.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

from .options import parser
from .paths import REPO, shipped_package
from .registry import MODELS, get

FRAME_EXT = (".jpg", ".jpeg", ".png", ".tif", ".tiff")   # what the engine's dir source reads

# What each model trains on: the `vigil dataset export` flags, the trainer's stage whose epochs
# are compared on the validation footage (the earlier stages only pre-train what it builds on),
# the option naming that stage's epochs, and the two schedules. `paper` is the command each
# shipped package was trained with (engine/zoo/README.md, "Reproduce" / "Shipped package");
# `tiny` is a smoke test of the whole path (a few steps; the package is not a useful detector).
PLANS = {
    "bdfi": dict(export=[], stage=None, epochs_opt="--epochs",
                 paper=["--epochs", "8", "--batch", "8", "--lr", "1e-3"],
                 tiny=["--epochs", "2", "--batch", "4", "--max-steps", "2"]),
    "maam-net": dict(export=["--flow"], stage=None, epochs_opt="--epochs",
                     paper=["--epochs", "16", "--batch", "8", "--lr", "1e-3", "--crop", "96x128"],
                     tiny=["--epochs", "2", "--batch", "4", "--max-steps", "2", "--crop", "96x128"]),
    "stm-ae": dict(export=["--flow"], stage="main", epochs_opt="--epochs-main",
                   paper=["--stage", "all", "--epochs-app", "3", "--epochs-mot", "3", "--epochs-main", "10",
                          "--batch", "8", "--crop", "96x128"],
                   tiny=["--stage", "all", "--epochs-app", "1", "--epochs-mot", "1", "--epochs-main", "2",
                         "--batch", "4", "--max-steps", "2", "--crop", "96x128"]),
    "hf2vad": dict(export=["--flow", "--objects"], stage="cvae", epochs_opt="--epochs-cvae",
                   paper=["--stage", "all", "--epochs-memae", "6", "--epochs-cvae", "4", "--batch", "64"],
                   tiny=["--stage", "all", "--epochs-memae", "1", "--epochs-cvae", "2", "--batch", "8",
                         "--max-steps", "2"]),
    "ustn-dsc": dict(export=[], stage=None, epochs_opt="--epochs",
                     paper=["--epochs", "5", "--crop", "64x128", "--batch", "8", "--lr", "1e-3"],
                     tiny=["--epochs", "2", "--crop", "64x128", "--batch", "2", "--max-steps", "2"]),
}
assert set(PLANS) == set(MODELS)

# The daemon's default hysteresis (vigil_engine::scoring::defaults::default_events).
DEFAULT_EVENTS = dict(on=0.5, off=0.35, min_frames_on=3, min_frames_off=5, cooldown_frames=10)
STEPS = ("split", "tensors", "train", "select", "export", "calib", "report")


def log(msg):
    print(f"[scene] {msg}", flush=True)


def read_json(path):
    with open(path) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- footage

def natural_key(name):
    """The engine's frame order (imageio::natural_cmp): digit runs by value, the rest byte-wise."""
    return [(0, int(p), p) if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name) if p]


def frame_files(folder):
    return sorted((f for f in os.listdir(folder)
                   if f.lower().endswith(FRAME_EXT) and os.path.isfile(os.path.join(folder, f))), key=natural_key)


def find_clips(root):
    """[(clip id, folder, [frame file names])] of the footage at `root`: DIR/frames/<clip>/ (what
    `vigil calib collect --out DIR` writes, a dataset split), DIR/<clip>/, or frames in DIR itself."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise SystemExit(f"--frames {root}: no such folder")
    if os.path.isdir(os.path.join(root, "frames")):
        root = os.path.join(root, "frames")
    clips = []
    for d in sorted(os.listdir(root), key=natural_key):
        p = os.path.join(root, d)
        if os.path.isdir(p):
            files = frame_files(p)
            if files:
                clips.append((d, p, files))
    if not clips:
        files = frame_files(root)
        if files:
            clips = [("000", root, files)]
    if not clips:
        raise SystemExit(f"--frames {root}: no frames ({', '.join(FRAME_EXT)}) in it or in its subfolders")
    return root, clips


def split_clips(clips, val_fraction):
    """(train, val) lists of (clip id, folder, files). Whole clips are held out, the last ones in
    name order (later footage checks that the model generalises beyond what it was trained on);
    a single clip is cut in time instead, its tail being the validation footage."""
    if len(clips) >= 2:
        n_val = min(len(clips) - 1, max(1, int(round(val_fraction * len(clips)))))
        return clips[:-n_val], clips[-n_val:], f"the last {n_val} of {len(clips)} clips"
    cid, folder, files = clips[0]
    cut = len(files) - max(1, int(round(val_fraction * len(files))))
    if cut < 3:
        raise SystemExit(f"one clip of {len(files)} frames is too short to hold out validation frames")
    return ([(cid, folder, files[:cut])], [(cid + "-tail", folder, files[cut:])],
            f"the last {len(files) - cut} of the {len(files)} frames of the only clip")


def link_split(clips, dest):
    """dest/frames/<clip>/ with a symbolic link per frame (the footage is not copied); a split
    folder that `vigil dataset export` and `vigil calib scores` read as a dataset."""
    for cid, folder, files in clips:
        d = os.path.join(dest, "frames", cid)
        os.makedirs(d, exist_ok=True)
        for f in files:
            link = os.path.join(d, f)
            if not os.path.lexists(link):
                os.symlink(os.path.join(folder, f), link)


# ----------------------------------------------------------------------------- vigil

def find_vigil(arg):
    """--vigil, else `vigil` on PATH, else the repository's release, then debug build."""
    if arg:
        path = shutil.which(arg) or (arg if os.path.isfile(arg) else None)
        if not path:
            raise SystemExit(f"--vigil {arg}: not found")
        return os.path.abspath(path)
    for cand in (shutil.which("vigil"), os.path.join(REPO, "target/release/vigil"),
                 os.path.join(REPO, "target/debug/vigil")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise SystemExit("no `vigil` binary: pass --vigil PATH, put vigil on PATH, or build it "
                     "(cargo build --release -p vigil)")


def run_vigil(vigil, args, capture=False):
    cmd = [vigil] + [str(a) for a in args]
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, cwd=REPO, text=True, capture_output=capture,
                       env={**os.environ, "VIGIL_LOG": os.environ.get("VIGIL_LOG", "warn")})
    if r.returncode != 0:
        if capture:
            sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"`{' '.join(cmd)}` failed (exit {r.returncode})")
    return r.stdout if capture else None


# ----------------------------------------------------------------------------- validation loss

def _batches(items, size):
    for s in range(0, len(items), size):
        yield items[s:s + size]


def validation_loss(name, model, folder, dev):
    """The model's training loss on the held-out clips, deterministic (eval mode, full frames, no
    augmentation, no random draw), averaged over every sample: the label-free criterion the
    epoch is chosen on. Returns (loss, samples, what)."""
    import torch
    import torch.nn.functional as F
    rng = np.random.default_rng(0)
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        if name == "bdfi":
            from .data import TripletSampler
            from .models.bdfi import bdfi_losses, _gaussian_window
            s = TripletSampler(folder, crop=None, reverse_p=0.0)
            window = _gaussian_window().to(dev)
            for items in _batches(s.items, 8):
                prev, cur, nxt = (t.to(dev) for t in s.make_batch(items, rng))
                loss, _ = bdfi_losses(model, model.forward_train(prev, nxt), cur, window)
                total, n = total + float(loss) * len(items), n + len(items)
            what = "BDFI training loss (L2 + SSIM + warp + memory terms) on every held-out triplet"
        elif name == "maam-net":
            from .data import FrameFlowSampler
            from .models.maam_net import maam_losses
            s = FrameFlowSampler(folder, crop=None)
            for items in _batches(s.items, 8):
                frame, flow = (t.to(dev) for t in s.make_batch(items, rng))
                loss, _ = maam_losses(model, model.forward_train(frame), frame, flow)
                total, n = total + float(loss) * len(items), n + len(items)
            what = "MAAM-Net training loss (frame L2 + flow L1 + entropy + latent terms) on every held-out frame"
        elif name == "stm-ae":
            from .models.stm_ae import generator_losses
            from .train.stm_ae import STMSampler
            s = STMSampler(folder, "window", n_frames=model.cfg.n_frames, crop=None)
            for items in _batches(s.items, 8):
                frames, flows, target = (t.to(dev) for t in s.make_batch(items, rng))
                loss, parts = generator_losses(model, model.forward_train(frames, flows), target, frames[:, -1:])
                # the adversarial term measures the discriminator, not the prediction: left out
                loss = float(loss) - model.cfg.w_adv * float(parts["adv"])
                total, n = total + loss * len(items), n + len(items)
            what = "STM-AE main-stage generator loss without the adversarial term, on every held-out window"
        elif name == "hf2vad":
            from .data import ObjectCubeSampler
            from .models.stm_ae import gradient_loss
            try:
                s = ObjectCubeSampler(folder)
            except ValueError:
                return None, 0, "no object in the held-out clips"
            c = model.cfg
            for items in _batches(s.items, 64):
                idx = np.asarray(items)
                cubes = torch.from_numpy(np.ascontiguousarray(s.cubes[idx])).to(dev)
                flows = torch.from_numpy(np.ascontiguousarray(s.flows[idx])).to(dev)
                _, pred = model(cubes[:, :c.clip_hist], flows)   # the deployed forward (posterior mean)
                target = cubes[:, c.clip_hist:]
                loss = c.w_frame * F.mse_loss(pred, target) + c.w_grad * gradient_loss(pred, target)
                total, n = total + float(loss) * len(items), n + len(items)
            what = ("HF2-VAD CVAE loss without the KL term (frame L2 + gradient) with the deployed "
                    "forward pass, on every held-out object")
        elif name == "ustn-dsc":
            from .train.ustn_dsc import ClipSampler, validate
            c = model.cfg
            s = ClipSampler(folder, c.clip, c.keyframes, None)
            if len(s):
                v = validate(model, s, 1)
                total, n = v["val_loss"] * v["val_clips"], v["val_clips"]
            what = "USTN-DSC restoration loss (Charbonnier on frames and differences) on every held-out clip"
        else:
            raise ValueError(name)
    if n == 0:
        return None, 0, what
    return total / n, n, what


class EpochKeeper:
    """Called after every checkpoint save (checkpoint.SAVE_HOOKS): keeps a copy of each epoch of
    the stage that is compared and records its validation loss in WORK/val.json, which a resumed
    run continues. The random generators are put back afterwards, so a run with validation trains
    exactly the weights of a run without."""

    def __init__(self, name, stage, val_folder, work, dev):
        self.name, self.stage, self.val, self.work, self.dev = name, stage, val_folder, work, dev
        self.path = os.path.join(work, "val.json")
        self.records = read_json(self.path) if os.path.exists(self.path) else []
        os.makedirs(os.path.join(work, "epochs"), exist_ok=True)
        self._pseudo = None

    def pseudo(self):
        """(selector, pseudo-videos of the held-out clips), or None for a model without a scorer."""
        from .select import SELECTORS
        if self.name not in SELECTORS:
            return None
        if self._pseudo is None:
            from .data import load_videos
            from .pseudo import pseudo_videos
            self._pseudo = (SELECTORS[self.name](), pseudo_videos(load_videos(self.val)))
        return self._pseudo

    def _where(self, ckpt):
        """(stage, epoch) the checkpoint was saved after."""
        if self.stage is None:
            rec = ckpt.get("train") or ckpt.get("provenance")
            return None, int(rec["epochs"])
        stages = ckpt.get("stages", {})
        if self.stage not in stages:
            return None, None                       # an earlier stage: not compared
        return self.stage, int(stages[self.stage]["epochs"])

    def __call__(self, path, ckpt):
        from . import checkpoint as ck
        stage, epoch = self._where(ckpt)
        if epoch is None:
            return
        keep = os.path.join(self.work, "epochs", f"epoch-{epoch:03d}.pt")
        shutil.copyfile(path, keep)
        if any(r["epoch"] == epoch for r in self.records):
            return                                  # the same epoch saved again (hf2vad's statistics)
        state = ck.rng_state()
        t0 = time.time()
        model, _ = ck.load(self.name, path, ckpt)
        loss, n, what = validation_loss(self.name, model.to(self.dev), self.val, self.dev)
        rec = {"stage": stage, "epoch": epoch, "val_loss": loss, "val_samples": n}
        pseudo = self.pseudo()
        if pseudo is not None:
            from .select import rate_checkpoint
            r = rate_checkpoint(pseudo[0], model.cpu(), pseudo[1])
            rec.update(pseudo_auc=r["best"]["auc"]["all"], pseudo_params=r["best"]["params"],
                       pseudo_paper_auc=r["paper"]["auc"]["all"])
        ck.set_rng_state(state)
        rec.update(val_s=round(time.time() - t0, 1), checkpoint=keep, criterion=what)
        self.records.append(rec)
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.records, f, indent=1)
        os.replace(self.path + ".tmp", self.path)
        log(f"epoch {epoch}: validation loss {loss if loss is None else f'{loss:.6f}'} over {n} held-out samples"
            + (f"; pseudo-anomaly AUC {rec['pseudo_auc']:.4f} with {rec['pseudo_params']}, the paper's score "
               f"{rec['pseudo_paper_auc']:.4f}" if "pseudo_auc" in rec else ""))


# ----------------------------------------------------------------------------- events

def simulate_events(scores, on, off, min_frames_on, min_frames_off, cooldown_frames):
    """Event starts of the daemon's hysteresis (vigil_engine::scoring::event::EventDetector,
    re-stated here) over one camera session's normalised scores."""
    starts, open_, below, pending, cool_until = 0, False, 0, 0, None
    for i, s in enumerate(scores):
        if open_:
            if s >= off:
                below = 0
            else:
                below += 1
                if below >= min_frames_off:
                    open_, cool_until = False, i + cooldown_frames
            continue
        if (cool_until is not None and i <= cool_until) or s < on:
            pending = 0
            continue
        pending += 1
        if pending >= min_frames_on:
            pending, open_, below = 0, True, 0
            starts += 1
    return starts


def events_at(sessions, on):
    ev = dict(DEFAULT_EVENTS, on=on, off=min(DEFAULT_EVENTS["off"], on))
    return sum(simulate_events(s, **ev) for s in sessions)


def threshold_for(sessions, allowed):
    """The smallest `on` (off = min(0.35, on), the other settings the defaults) at which the
    validation sessions raise at most `allowed` events."""
    values = np.unique(np.concatenate(sessions))
    # bisection: fewer frames reach a higher `on` (the off = on coupling below 0.35 aside)
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if events_at(sessions, float(values[mid])) <= allowed:
            hi = mid
        else:
            lo = mid + 1
    if lo < len(values):
        return float(values[lo])
    return float(np.nextafter(np.float32(values[-1]), np.float32(np.inf)))


DEMO_LINE = re.compile(r"^frame\s+(\d+)\s+raw\s+(\S+)\s+score\s+(\S+)")


def replay_clip(vigil, pkg, clip_dir):
    """(raw [T], score [T], event starts) of one validation clip through `vigil demo` (the
    daemon's pipeline: decode, preprocessing, network, recipe, default normaliser and events)."""
    out = run_vigil(vigil, ["demo", "--model", pkg, "--frames", clip_dir, "--scores"], capture=True)
    raw, score, starts = [], [], 0
    for line in out.splitlines():
        m = DEMO_LINE.match(line.strip())
        if m:
            raw.append(float(m.group(2)))
            score.append(float(m.group(3)))
        elif line.startswith("EVENT start"):
            starts += 1
    if not score:
        raise SystemExit(f"`vigil demo` scored no frame of {clip_dir} (too short for the model's window?)")
    return np.asarray(raw), np.asarray(score), starts


def quantiles(x):
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "p50": float(np.percentile(x, 50)), "p90": float(np.percentile(x, 90)),
            "p99": float(np.percentile(x, 99)), "p999": float(np.percentile(x, 99.9)), "max": float(x.max())}


def calibration_of(pkg):
    import tomllib
    with open(os.path.join(pkg, "model.toml"), "rb") as f:
        return tomllib.load(f).get("calibration")


def raw_at(score, median, spread):
    """The raw score the default normaliser publishes as `score` while its baseline sits at the
    calibrated median: score = logistic(2 ((raw - median) / spread - 1))."""
    score = min(max(score, 1e-6), 1 - 1e-6)
    return median + spread * (1.0 + 0.5 * math.log(score / (1.0 - score)))


# ----------------------------------------------------------------------------- report

def fmt(x, d=3):
    return "-" if x is None else f"{x:.{d}f}"


def write_report(rep_dir, rep, sessions, raws, records, chosen):
    os.makedirs(rep_dir, exist_ok=True)
    with open(os.path.join(rep_dir, "report.json"), "w") as f:
        json.dump(rep, f, indent=1)
    plot = plot_report(os.path.join(rep_dir, "scores.png"), rep, sessions, records, chosen)
    v, fa, th = rep["validation"], rep["false_alarms"], rep["threshold"]
    q, qr = v["score"], v["raw"]
    cal = rep["calibration"]["score"]
    lines = [
        f"# Scene report: `{rep['package']}`",
        "",
        f"Model `{rep['model']}` trained by `vigil-zoo scene` on {rep['footage']['train_frames']} frames "
        f"({rep['footage']['train_clips']} clips) of `{rep['footage']['frames']}`; validation: "
        f"{rep['footage']['val_description']} ({v['frames']} frames, {v['minutes']:.2f} min at {rep['fps']:g} fps), "
        "never seen in training. Schedule `" + rep["schedule"] + f"`, device `{rep['device']}`.",
        "",
        "## Checkpoint choice (no labels)",
        "",
        f"Criterion: {rep['selection']['criterion']}.",
        "",
        "| epoch | validation loss | pseudo-anomaly AUC (best weights) | weights | the paper's score |",
        "|---|---|---|---|---|",
    ] + [f"| {r['epoch']}{' (chosen)' if r['epoch'] == chosen else ''} | {fmt(r['val_loss'], 6)} | "
         f"{fmt(r.get('pseudo_auc'), 4)} | {r.get('pseudo_params') or '-'} | {fmt(r.get('pseudo_paper_auc'), 4)} |"
         for r in records] + [
        "",
        "## Scores on the validation footage",
        "",
        "Every held-out clip replayed through the daemon's own pipeline (`vigil demo --scores`: the "
        "package's preprocessing, network, recipe and default normaliser, each clip a camera session).",
        "",
        "| | mean | p50 | p90 | p99 | p99.9 | max |",
        "|---|---|---|---|---|---|---|",
        "| published score (0..1) | " + " | ".join(fmt(q[k]) for k in ("mean", "p50", "p90", "p99", "p999", "max")) + " |",
        "| raw score | " + " | ".join(fmt(qr[k]) for k in ("mean", "p50", "p90", "p99", "p999", "max")) + " |",
        f"| raw score, training footage (`[calibration]`) | {fmt(cal.get('mean'))} | {fmt(cal.get('p50'))} | - | "
        f"{fmt(cal.get('p99'))} | {fmt(cal.get('p999'))} | {fmt(cal.get('max'))} |",
        "",
        "## False alarms",
        "",
        f"At the default thresholds (on {DEFAULT_EVENTS['on']}, off {DEFAULT_EVENTS['off']}, "
        f"{DEFAULT_EVENTS['min_frames_on']} frames on, {DEFAULT_EVENTS['min_frames_off']} off, cooldown "
        f"{DEFAULT_EVENTS['cooldown_frames']}): **{fa['events']} event(s)** on {v['minutes']:.2f} min of normal "
        f"footage, i.e. **{fmt(fa['per_hour'], 1)} false alarms per hour**"
        + (f" (none seen; with this little footage the rate can still be up to {fmt(fa['per_hour_upper_95'], 1)} "
           "per hour, 95 % rule of three)" if fa["events"] == 0 else "") + ".",
        "",
        f"Target {rep['target_false_alarms_per_hour']:g} per hour: at most {th['allowed_events']} event(s) on this footage. "
        f"The smallest threshold that keeps to it is `on = {th['on_for_target']}` ({th['events_for_target']} event(s)); "
        f"the recommended **`on = {th['on']}`** (off = {th['off']}) is that, but never below the default "
        f"{DEFAULT_EVENTS['on']} ({th['events']} event(s) on the validation footage; raw score {fmt(th['raw'])} while "
        "the baseline sits at the calibrated median).",
        "",
    ]
    if th["allowed_events"] == 0:
        lines += [f"*The validation footage is shorter than the time in which {rep['target_false_alarms_per_hour']:g} "
                  "false alarm per hour is expected, so this threshold only guarantees no event on it; collect more "
                  "footage (an hour or more, covering the day's light) for a rate that means something.*", ""]
    lines += [
        "Camera configuration with this package and threshold (docs/configuration.md):",
        "",
        "```toml",
        "[[camera]]",
        'name = "cam0"',
        f'model = "{rep["package"]}"',
        'source = { kind = "v4l", device = "/dev/video0" }',
        f"events = {{ on = {th['on']}, off = {th['off']}, min_frames_on = {DEFAULT_EVENTS['min_frames_on']}, "
        f"min_frames_off = {DEFAULT_EVENTS['min_frames_off']}, cooldown_frames = {DEFAULT_EVENTS['cooldown_frames']}, "
        "update_every_frames = 10 }",
        "```",
        "",
        f"The simulated hysteresis raises {fa['simulated_at_default']} event(s) at the defaults where the daemon "
        f"raised {fa['events']}" + (" (they agree)." if fa["simulated_at_default"] == fa["events"] else
                                   " (they disagree: trust the daemon's count)."),
        "The threshold search keeps each frame's published score as the default run produced it (the "
        "normaliser's baseline does not learn from frames inside an event, so another `on` could move it slightly).",
        "",
    ]
    if plot:
        lines += ["![scores](scores.png)", ""]
    lines += ["## Steps and times", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in rep["times_s"].items()] + [""]
    with open(os.path.join(rep_dir, "report.md"), "w") as f:
        f.write("\n".join(lines))


def plot_report(path, rep, sessions, records, chosen):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    allv = np.concatenate(sessions)
    ax[0].hist(allv, bins=40, range=(0, 1), color="tab:blue")
    for x, lab, c in ((DEFAULT_EVENTS["on"], "default on", "tab:red"), (DEFAULT_EVENTS["off"], "default off", "tab:orange"),
                      (rep["threshold"]["on_for_target"], "smallest on for target", "tab:gray"),
                      (rep["threshold"]["on"], "recommended on", "tab:green")):
        ax[0].axvline(x, color=c, ls="--", label=f"{lab} {x:.3f}")
    ax[0].set(title="published score, validation frames", xlabel="score", ylabel="frames")
    ax[0].legend(fontsize=8)
    t0 = 0
    for i, s in enumerate(sessions):
        ax[1].plot(np.arange(t0, t0 + len(s)), s, lw=1)
        t0 += len(s)
    ax[1].axhline(DEFAULT_EVENTS["on"], color="tab:red", ls="--")
    ax[1].axhline(rep["threshold"]["on"], color="tab:green", ls="--")
    ax[1].set(title="score per validation frame (clips in turn)", xlabel="frame", ylim=(0, 1))
    ep = [r["epoch"] for r in records if r["val_loss"] is not None]
    vl = [r["val_loss"] for r in records if r["val_loss"] is not None]
    ax[2].plot(ep, vl, "o-")
    if chosen in ep:
        ax[2].plot([chosen], [vl[ep.index(chosen)]], "r*", ms=14, label="chosen")
        ax[2].legend(fontsize=8)
    ax[2].set(title="validation loss per epoch", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- main

def main(argv=None, prog="vigil-zoo scene"):
    ap = parser(__doc__, prog)
    ap.add_argument("--frames", required=True, help="normal footage: DIR/<clip>/*.png|jpg, DIR/frames/<clip>/, or a flat folder")
    ap.add_argument("--model", required=True, choices=list(MODELS))
    ap.add_argument("--out", required=True, help="the package folder to write (model.onnx + model.toml)")
    ap.add_argument("--work", help="work folder: split, tensors, checkpoints, logs (default: OUT-work)")
    ap.add_argument("--report", help="report folder (default: OUT-report)")
    ap.add_argument("--vigil", help="the vigil binary (default: vigil on PATH, else target/release/vigil, target/debug/vigil)")
    ap.add_argument("--schedule", choices=("paper", "tiny"), default="paper",
                    help="paper: the shipped package's training command; tiny: a few steps (smoke tests)")
    ap.add_argument("--epochs", type=int, help="epochs of the compared (last) training stage, instead of the schedule's")
    ap.add_argument("--max-steps", type=int, help="steps per epoch at most, instead of the schedule's")
    ap.add_argument("--batch", type=int, help="batch size, instead of the schedule's")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: the trainer's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of the model's config in training (the trainer's --set), e.g. an ablation")
    ap.add_argument("--device", help="cpu or cuda (default: cuda when torch sees a GPU)")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run from its work folder")
    ap.add_argument("--val-fraction", type=float, default=0.2, help="share of the footage held out for validation")
    ap.add_argument("--fps", type=float, default=10.0, help="frame rate of the footage (for false alarms per hour)")
    ap.add_argument("--false-alarms-per-hour", type=float, default=1.0, help="target rate for the `on` threshold")
    ap.add_argument("--like", help="package whose geometry, [flow] and [objects] the tensors take (default: engine/models/ped2-MODEL)")
    args = ap.parse_args(argv)

    import torch
    from . import checkpoint as ck

    name, plan = args.model, PLANS[args.model]
    out = os.path.abspath(args.out)
    work = os.path.abspath(args.work or out.rstrip("/") + "-work")
    rep_dir = os.path.abspath(args.report or out.rstrip("/") + "-report")
    vigil = find_vigil(args.vigil)
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    like = args.like or shipped_package(name)
    like = like if os.path.exists(os.path.join(like, "model.toml")) else None
    frames_root, clips = find_clips(args.frames)

    # what a resumed run must agree on
    key = {"frames": frames_root, "model": name, "out": out, "schedule": args.schedule, "epochs": args.epochs,
           "max_steps": args.max_steps, "batch": args.batch, "seed": args.seed, "val_fraction": args.val_fraction,
           "set": args.set}
    state_path = os.path.join(work, "scene.json")
    if args.resume and os.path.exists(state_path):
        state = read_json(state_path)
        if state["key"] != key:
            raise SystemExit(f"--resume: {work} was started with other options:\n  {state['key']}\n  {key}")
        log(f"resuming {work}: done {', '.join(state['done']) or 'nothing'}")
    else:
        if os.path.exists(work):
            if not os.path.exists(state_path):
                raise SystemExit(f"{work} exists and is not a `vigil-zoo scene` work folder; pass --work")
            shutil.rmtree(work)                     # a fresh run: nothing of an older one may leak in
        os.makedirs(work)
        state = {"key": key, "done": [], "times_s": {}}

    def done(step, t0, **extra):
        state["done"].append(step)
        state["times_s"][step] = round(time.time() - t0, 1)
        state.update(extra)
        with open(state_path + ".tmp", "w") as f:
            json.dump(state, f, indent=1)
        os.replace(state_path + ".tmp", state_path)

    split_dir = {p: os.path.join(work, "split", p) for p in ("train", "val")}
    data_dir = {p: os.path.join(work, "data", p) for p in ("train", "val")}

    # 1. split
    train, val, val_desc = split_clips(clips, args.val_fraction)
    if "split" not in state["done"]:
        t0 = time.time()
        for p, cl in (("train", train), ("val", val)):
            link_split(cl, split_dir[p])
        done("split", t0)
    log(f"{sum(len(c[2]) for c in train)} training frames in {len(train)} clip(s), validation: {val_desc}")

    # 2. tensors through the runtime's own preprocessing
    if "tensors" not in state["done"]:
        t0 = time.time()
        geo = ["--model", like] if like else ["--width", "192", "--height", "128", "--channels", "1", "--range=-1,1"]
        for p in ("train", "val"):
            shutil.rmtree(data_dir[p], ignore_errors=True)
            run_vigil(vigil, ["dataset", "export", "--dataset", split_dir[p], "--out", data_dir[p]] + geo + plan["export"])
        done("tensors", t0)

    # 3. train, keeping and scoring every epoch of the compared stage
    train_ckpt = os.path.join(work, "train.pt")
    keeper = EpochKeeper(name, plan["stage"], data_dir["val"], work, dev)
    if "train" not in state["done"]:
        t0 = time.time()
        targv = ["--data", data_dir["train"], "--out", train_ckpt, "--seed", str(args.seed), "--device", dev] + plan[args.schedule]
        for opt, v in ((plan["epochs_opt"], args.epochs), ("--max-steps", args.max_steps), ("--batch", args.batch),
                       ("--threads", args.threads)):
            if v is not None:
                targv += [opt, str(v)]              # later options win in argparse
        for kv in args.set:
            targv += ["--set", kv]
        if args.resume and os.path.exists(train_ckpt) and ck.read(train_ckpt).get("resume"):
            targv += ["--resume", train_ckpt]
        log("$ vigil-zoo train --model " + name + " " + " ".join(targv))
        ck.SAVE_HOOKS.append(keeper)
        try:
            get(name).entry("train")(targv, f"vigil-zoo train --model {name}")
        finally:
            ck.SAVE_HOOKS.remove(keeper)
        done("train", t0, train_command=" ".join(targv))

    # 4. select the epoch on the validation loss
    records = [r for r in keeper.records if r["stage"] == plan["stage"]]
    if not records:
        raise SystemExit("training saved no epoch of the compared stage")
    chosen_rec = choose_epoch(records)
    best = os.path.join(work, "best.pt")
    if "select" not in state["done"]:
        t0 = time.time()
        shutil.copyfile(chosen_rec["checkpoint"], best)
        if name == "hf2vad" and not ck.read(best).get("score_stats"):
            # an earlier epoch than the last: its z-score statistics over the training objects
            get(name).entry("train")(["--stage", "stats", "--init", best, "--data", data_dir["train"],
                                      "--out", best, "--device", dev], "vigil-zoo train --model hf2vad")
        done("select", t0, chosen_epoch=chosen_rec["epoch"])
    log(f"chosen: epoch {chosen_rec['epoch']} (validation loss {fmt(chosen_rec['val_loss'], 6)}"
        + (f", pseudo-anomaly AUC {chosen_rec['pseudo_auc']:.4f} with {chosen_rec['pseudo_params']})"
           if "pseudo_auc" in chosen_rec else ")"))

    # 5. export with the parity check
    pkg_name = re.sub(r"[^A-Za-z0-9_.-]", "-", os.path.basename(out.rstrip("/")))
    if "export" not in state["done"]:
        t0 = time.time()
        eargv = ["--checkpoint", best, "--out-dir", out, "--name", pkg_name, "--dataset", frames_root,
                 "--trained-on", f"vigil-zoo scene, {dev}, torch {torch.__version__}",
                 "--sample-data", data_dir["val"]]
        if name == "hf2vad":
            eargv += ["--objects-from", data_dir["train"]]
        if name == "bdfi" and "pseudo_params" in chosen_rec:
            p = chosen_rec["pseudo_params"]
            eargv += ["--alpha", str(p["alpha"]), "--flow-weight", str(p["flow_weight"])]
        log("$ vigil-zoo export --model " + name + " " + " ".join(eargv))
        get(name).entry("export")(eargv, f"vigil-zoo export --model {name}")
        retitle(out, name, frames_root, best)
        done("export", t0)

    # 6. calibration on the training part
    if "calib" not in state["done"]:
        t0 = time.time()
        run_vigil(vigil, ["calib", "scores", out, "--dataset", split_dir["train"]])
        done("calib", t0)

    # 7. validation footage through the daemon's pipeline, report
    t0 = time.time()
    cal = calibration_of(out)
    sessions, raws, daemon_events = [], [], 0
    for cid, _, _ in val:
        raw, score, starts = replay_clip(vigil, out, os.path.join(split_dir["val"], "frames", cid))
        sessions.append(score)
        raws.append(raw)
        daemon_events += starts
    n_val = int(sum(len(s) for s in sessions))
    hours = n_val / args.fps / 3600.0
    allowed = int(math.floor(args.false_alarms_per_hour * hours + 1e-9))
    on_target = min(math.ceil(threshold_for(sessions, allowed) * 1000) / 1000, 0.999)  # rounded up: never more events
    # Never below the default: the default is one calibrated spread above the normal median, and
    # a lower `on` would make the box more sensitive on the strength of this footage alone.
    on_cfg = max(on_target, DEFAULT_EVENTS["on"])
    median = cal["score"]["p50"]
    spread = max(cal["score"]["p999"] - cal["score"]["p50"], 1e-6)
    rep = {
        "package": out, "model": name, "schedule": args.schedule, "device": dev, "torch": torch.__version__,
        "vigil": vigil, "fps": args.fps, "target_false_alarms_per_hour": args.false_alarms_per_hour,
        "footage": {"frames": frames_root, "clips": len(clips), "train_clips": len(train),
                    "train_frames": int(sum(len(c[2]) for c in train)), "val_clips": [c[0] for c in val],
                    "val_description": val_desc},
        "selection": {"criterion": selection_criterion(chosen_rec),
                      "chosen_epoch": chosen_rec["epoch"], "params": chosen_rec.get("pseudo_params"),
                      "curve": [{k: r.get(k) for k in ("epoch", "val_loss", "val_samples", "pseudo_auc",
                                                       "pseudo_params", "pseudo_paper_auc")} for r in records]},
        "calibration": cal,
        "validation": {"frames": n_val, "minutes": n_val / args.fps / 60.0, "score": quantiles(np.concatenate(sessions)),
                       "raw": quantiles(np.concatenate(raws))},
        "false_alarms": {"events": daemon_events, "per_hour": daemon_events / hours,
                         "per_hour_upper_95": 3.0 / hours if daemon_events == 0 else None,
                         "simulated_at_default": events_at(sessions, DEFAULT_EVENTS["on"]),
                         "thresholds": dict(DEFAULT_EVENTS)},
        "threshold": {"on": on_cfg, "off": min(DEFAULT_EVENTS["off"], on_cfg), "allowed_events": allowed,
                      "on_for_target": on_target, "events_for_target": events_at(sessions, on_target),
                      "events": events_at(sessions, on_cfg), "raw": raw_at(on_cfg, median, spread),
                      "raw_default_on": raw_at(DEFAULT_EVENTS["on"], median, spread)},
        "train_command": state.get("train_command"),
        "times_s": {**state["times_s"], "report": round(time.time() - t0, 1)},
    }
    write_report(rep_dir, rep, sessions, raws, records, chosen_rec["epoch"])
    log(f"package {out}; report {rep_dir}/report.md: {daemon_events} event(s) at the defaults on "
        f"{rep['validation']['minutes']:.2f} min of held-out footage; on = {on_cfg} for "
        f"{args.false_alarms_per_hour:g} false alarm(s) per hour")
    return 0


def choose_epoch(records):
    """The record of the epoch to export: the best pseudo-anomaly AUC where the model has a
    scorer (ties: the lower validation loss), else the lowest validation loss, else the last."""
    rated = [r for r in records if r.get("pseudo_auc") is not None]
    if rated:
        return max(rated, key=lambda r: (round(r["pseudo_auc"], 9), -(r["val_loss"] or 0.0)))
    scored = [r for r in records if r["val_loss"] is not None]
    return min(scored, key=lambda r: r["val_loss"]) if scored else records[-1]


def selection_criterion(rec):
    if rec.get("pseudo_auc") is not None:
        return ("AUC over pseudo-anomalies made from the held-out clips (vigil_zoo.pseudo; paper protocol), "
                "best over the epochs and the score's fusion weights; the validation loss is shown beside it: "
                + rec["criterion"] + " (eval mode, no augmentation)")
    return rec["criterion"] + " (eval mode, no augmentation); the epoch with the lowest value is exported"


def retitle(pkg, name, frames_root, best):
    """The exporters describe the Ped2 packages; a scene package says what it was trained on and
    where its checkpoint is (model.toml's description and [provenance] checkpoint lines)."""
    from .manifest import toml_str
    path = os.path.join(pkg, "model.toml")
    with open(path) as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if line.startswith("description = "):
            lines[i] = "description = " + toml_str(f"{get(name).summary}; trained by `vigil-zoo scene` "
                                                   f"on the footage in {frames_root}")
        elif line.startswith("checkpoint = "):
            lines[i] = "checkpoint = " + toml_str(best)
    with open(path, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
