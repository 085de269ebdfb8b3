"""The five models of the zoo, by the names of their recipes and packages
(engine/models/ped2-<name>): how to build each network from a checkpoint's config, its ONNX
interface, and the modules holding its trainer, exporter and evaluator."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

KINDS = ("train", "export", "evaluate")


@dataclass(frozen=True)
class ModelSpec:
    name: str              # recipe and package name
    module: str            # vigil_zoo.models.<module>, .train.<module>, .export.<module>, .evaluate.<module>
    model_class: str
    config_class: str
    summary: str
    inputs: Callable       # cfg -> [(ONNX input name, channels)], in forward order
    outputs: tuple         # ONNX output names, in forward order
    slots: Optional[int] = None   # object models: the package's static batch of object slots
    after_load: Optional[Callable] = None  # (model, ckpt) -> None, before eval()

    def models_module(self):
        return importlib.import_module(f"vigil_zoo.models.{self.module}")

    def build(self, config: dict):
        m = self.models_module()
        cfg_cls = getattr(m, self.config_class)
        return getattr(m, self.model_class)(cfg_cls.from_dict(config))

    def entry(self, kind: str) -> Callable:
        """main(argv, prog) of the model's trainer, exporter or evaluator."""
        if kind not in KINDS:
            raise ValueError(kind)
        return importlib.import_module(f"vigil_zoo.{kind}.{self.module}").main

    def input_shapes(self, cfg, batch: Optional[int] = None) -> list:
        """[(name, shape)] of the package's inputs: batch 1 at the frame size, or the object
        slots at the cube size."""
        if self.slots is not None:
            n, h, w = batch or self.slots, cfg.cube, cfg.cube
        else:
            n, h, w = batch or 1, cfg.height, cfg.width
        return [(name, (n, ch, h, w)) for name, ch in self.inputs(cfg)]


def _stm_after_load(model, ckpt):
    # the stream encoders are frozen from the main stage on (eval mode, no gradient)
    if "main" in ckpt.get("stages", {}):
        model.freeze_streams()


MODELS = {s.name: s for s in (
    ModelSpec("bdfi", "bdfi", "BDFI", "BDFIConfig",
              "bi-directional frame interpolation, jointly trained flow U-Net, top-K memory (WACV 2023)",
              lambda c: [("prev", 1), ("next", 1)], ("frame", "mem_err", "flow")),
    ModelSpec("maam-net", "maam_net", "MAAMNet", "MAAMConfig",
              "memory-augmented appearance-motion autoencoder (Pattern Recognition 2023)",
              lambda c: [("frame", 1)], ("recon", "flow")),
    ModelSpec("stm-ae", "stm_ae", "STMAE", "STMConfig",
              "two-stream spatial-temporal memories autoencoder, frame prediction (ICME 2022)",
              lambda c: [("frames", c.n_frames), ("flows", 2 * c.n_flows)], ("pred",),
              after_load=_stm_after_load),
    ModelSpec("hf2vad", "hf2vad", "HF2VAD", "HF2VADConfig",
              "object-level ML-MemAE-SC flow reconstruction + CVAE frame prediction (ICCV 2021)",
              lambda c: [("frames", c.img_channels * c.clip_hist), ("flows", c.flow_ch)], ("flow_recon", "pred"),
              slots=16),
    ModelSpec("ustn-dsc", "ustn_dsc", "USTNDSC", "USTNConfig",
              "video event restoration from keyframes, U-shaped Swin transformer (CVPR 2023)",
              lambda c: [("keyframes", 3)], ("clip",)),
)}


def names() -> list:
    return list(MODELS)


def get(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise SystemExit(f"unknown model {name!r}; the zoo has: {', '.join(MODELS)}") from None
