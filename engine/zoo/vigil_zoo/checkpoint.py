"""Checkpoints of every zoo model: atomic save, load into the registered network, and the
training state that `--resume` continues from.

A checkpoint is a dict with at least "state_dict" (float32 tensors) and "config" (the model's
config dataclass as a dict); each trainer adds its provenance ("train", "stages" or
"provenance"). Trainers also store "resume": the epoch (and stage) just finished, the
optimiser and scheduler states and every random generator the run draws from, so that a resumed
run continues exactly where the interrupted one stopped (bit for bit on the CPU). A finished run
drops it (the Adam moments would triple the size of the checkpoint that ships), so only an
interrupted run can be resumed. Export and evaluation never read it."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


# Called as hook(path, ckpt) after every save: `vigil-zoo scene` keeps each epoch's weights and
# scores them on held-out footage this way, without the trainers knowing about it.
SAVE_HOOKS: list = []


def save_checkpoint(path, ckpt) -> None:
    """torch.save through a temporary file, so an interrupted save never leaves a torn checkpoint."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    for hook in list(SAVE_HOOKS):
        hook(path, ckpt)


def read(path) -> dict:
    """The checkpoint dict, on the CPU (it holds numpy and Python objects besides tensors)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def float_state(model) -> dict:
    """The state_dict as saved: floating tensors as contiguous float32 on the CPU, integer
    buffers (BatchNorm counters, indices) as they are."""
    return {k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu().clone()
            for k, v in model.state_dict().items()}


def load(name: str, path, ckpt=None, overrides=None, for_training=False):
    """(model on the CPU, checkpoint dict) of the registered model `name`, in eval mode as
    exported and evaluated; `for_training` leaves it as built (train mode, nothing frozen) for a
    trainer's --init / --resume, `overrides` replaces config fields (--set)."""
    from .registry import get
    spec = get(name)
    ckpt = read(path) if ckpt is None else ckpt
    model = spec.build({**ckpt["config"], **(overrides or {})})
    model.load_state_dict(ckpt["state_dict"])
    if for_training:
        return model, ckpt
    if spec.after_load is not None:
        spec.after_load(model, ckpt)
    model.eval()
    return model, ckpt


# ----------------------------------------------------------------------------- resume

def rng_state(np_rng=None, gen=None) -> dict:
    """Every generator a trainer may draw from: Python's, numpy's global one, torch's CPU (and
    CUDA) default generators, the run's own numpy Generator and torch Generator."""
    return {
        "python": random.getstate(),
        "numpy_global": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "np_rng": np_rng.bit_generator.state if np_rng is not None else None,
        "gen": gen.get_state() if gen is not None else None,
    }


def set_rng_state(state, np_rng=None, gen=None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy_global"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if np_rng is not None and state.get("np_rng") is not None:
        np_rng.bit_generator.state = state["np_rng"]
    if gen is not None and state.get("gen") is not None:
        gen.set_state(state["gen"])


def resume_record(epoch, optimizers, schedulers, np_rng=None, gen=None, stage=None) -> dict:
    """The "resume" entry written after an epoch; optimizers / schedulers are dicts by role."""
    return {"stage": stage, "epoch": epoch,
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "rng": rng_state(np_rng, gen)}


def restore(rec, optimizers, schedulers, np_rng=None, gen=None) -> int:
    """Puts a resume record back into a run's optimisers, schedulers and generators; returns
    the first epoch still to run."""
    for k, o in optimizers.items():
        o.load_state_dict(rec["optimizers"][k])
    for k, s in schedulers.items():
        s.load_state_dict(rec["schedulers"][k])
    set_rng_state(rec["rng"], np_rng, gen)
    return rec["epoch"] + 1


def resume_of(ckpt, path) -> dict:
    """The checkpoint's resume record, or a clear exit where there is none."""
    rec = ckpt.get("resume")
    if rec is None:
        raise SystemExit(f"--resume {path}: this checkpoint has no training state (the run finished, "
                         f"or an older trainer wrote it); start a new run from its weights instead")
    return rec


def continue_run(prior, path, optimizers, schedulers, np_rng=None, gen=None, record="train"):
    """(first epoch, history, command, wall seconds so far) of a single-stage run: from the
    resume record and the provenance entry `record` of `prior` (the --resume checkpoint), or
    (1, [], None, 0.0) for a fresh run (prior None). The resumed run keeps the interrupted
    run's command, which is what reproduces both."""
    if prior is None:
        return 1, [], None, 0.0
    first = restore(resume_of(prior, path), optimizers, schedulers, np_rng, gen)
    prov = prior[record]
    print(f"resuming {path} after epoch {first - 1}", flush=True)
    return first, list(prov["history"]), prov["command"], float(prov["wall_s"])


def continue_stage(rec, stages_info, stage, optimizers, schedulers, np_rng=None, gen=None):
    """(first epoch, history, wall seconds so far) of stage `stage` of a multi-stage trainer:
    resumed where the resume record `rec` names this stage, else a fresh stage (1, [], 0.0)."""
    if rec is None or rec["stage"] != stage:
        return 1, [], 0.0
    first = restore(rec, optimizers, schedulers, np_rng, gen)
    prov = stages_info[stage]
    print(f"[{stage}] resuming after epoch {first - 1}", flush=True)
    return first, list(prov["history"]), float(prov["wall_s"])
