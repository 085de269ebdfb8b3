"""vigil_zoo: the PyTorch side of Vigil's five video-anomaly models (BDFI, MAAM-Net, STM-AE,
HF2-VAD, USTN-DSC) on UCSD Ped2 and its test detector: training, export to model packages,
evaluation, the Rust parity references, benchmarks. Command line: `vigil-zoo` (vigil_zoo.cli)."""

__version__ = "0.1.0"
