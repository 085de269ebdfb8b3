"""MAAM-Net: Memory-Augmented Appearance-Motion Network for video anomaly detection.

Wang, Tian, Zhou, Shi, Hua, "Memory-augmented appearance-motion network for video anomaly
detection", Pattern Recognition 138 (2023) 109335 (see README.md for what is taken from the
paper, what from the authors' code, and what was chosen here).

One frame I_t goes in; the network reconstructs I_t (appearance) and predicts the optical flow
F_{t->t+1} to the next frame (motion), both from the same memory read-out:

1. encoder: 5 conv(3x3)-BN-ReLU blocks, strides 1, 2, 2, 2, 2 -> bottleneck z at H/16 x W/16
   (8 x 12 for 128 x 192), C = 128 channels. z is post-ReLU (non-negative);
2. memory: N items m_n in R^C (default N = 10). For every bottleneck position, the query z_ij is
   compared with every item by cosine similarity, w = softmax_n(cos(z_ij, m_n)) (no temperature,
   as in the paper), the weights are hard-shrunk
       w'_n = relu(w_n - lambda) * w_n / (|w_n - lambda| + eps),   lambda = 1/N by default,
   renormalised to sum 1 (L1), and the read-out is z_hat_ij = sum_n w'_n m_n;
3. reintegration: z_hat *replaces* z (as in the authors' code: both decoders take only the
   memory read-out). There are no skip connections, so nothing reaches the outputs without going
   through the memory: a query far from every normal prototype is rebuilt from normal
   prototypes, and the appearance and motion reconstructions of abnormal content are distorted;
4. two decoders with the same layout but separate weights, each 4 x [ConvTranspose(4x4, stride
   2)-BN-ReLU] + Conv(3x3): the appearance decoder ends in tanh (frame in [-1, 1]), the motion
   decoder has no activation (flow in pixels).

Everything in the forward pass exports to plain ONNX ops that tract and TensorRT handle: Conv,
ConvTranspose (BatchNorm folded in for export by `fold_batchnorm`), Relu, Transpose, MatMul,
Softmax, Sub, Abs, Mul, Div, ReduceSum, Sqrt, Tanh. Shapes are static.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass
class MAAMConfig:
    height: int = 128
    width: int = 192
    # Encoder: output channels and stride of each of the 5 conv-BN-ReLU blocks. The paper's
    # (authors' code) widths are 64-128-256-512-512 with the same strides; a quarter of that
    # keeps a training run within ~25 min on 2 CPU cores. enc_widths[-1] is the memory dimension C.
    enc_widths: tuple = (16, 32, 64, 128, 128)
    enc_strides: tuple = (1, 2, 2, 2, 2)
    # Decoder: output channels of each 2x up-sampling block (one per stride-2 encoder block);
    # authors' code 256-256-128-64.
    dec_widths: tuple = (64, 64, 32, 16)
    dropout: float = 0.0          # decoder dropout in training (authors' code: 0.3); see README
    memory_slots: int = 10        # N
    shrink_lambda: float = 0.0    # hard-shrink threshold; 0 = 1/N. Allowed range [1/N, 3/N]
    mem_temperature: float = 1.0  # softmax over cos / T; the paper uses plain softmax (T = 1)
    # loss weights: total = L_app + w_mot L_mot + w_spa L_spa + w_lat L_lat
    w_mot: float = 1.0            # lambda_m, L1 flow loss
    w_spa: float = 0.0002         # alpha, entropy of the shrunk addressing weights
    w_lat: float = 0.01           # beta, margin-based latent loss
    lat_zeta: float = 0.9         # L_lat = mean relu(zeta - cos(z, z_hat)): no cost once cos >= zeta

    def __post_init__(self):
        self.enc_widths = tuple(self.enc_widths)
        self.enc_strides = tuple(self.enc_strides)
        self.dec_widths = tuple(self.dec_widths)
        n = self.memory_slots
        if n < 1:
            raise ValueError(f"memory_slots must be >= 1, got {n}")
        if self.shrink_lambda == 0.0:
            self.shrink_lambda = 1.0 / n
        if not (1.0 / n - 1e-9 <= self.shrink_lambda <= 3.0 / n + 1e-9):
            raise ValueError(f"shrink_lambda must be in [1/N, 3/N] = [{1 / n:.4g}, {3 / n:.4g}], "
                             f"got {self.shrink_lambda}")
        if len(self.enc_widths) != len(self.enc_strides):
            raise ValueError("enc_widths and enc_strides must have the same length")
        if any(s not in (1, 2) for s in self.enc_strides):
            raise ValueError(f"enc_strides must be 1 or 2, got {self.enc_strides}")
        if len(self.dec_widths) != self.downsampling:
            raise ValueError(f"dec_widths needs one entry per stride-2 block ({self.downsampling}), "
                             f"got {self.dec_widths}")
        f = self.total_stride
        if self.height % f or self.width % f:
            raise ValueError(f"height and width must be multiples of the total stride {f}")

    @property
    def downsampling(self):
        return sum(1 for s in self.enc_strides if s == 2)

    @property
    def total_stride(self):
        return 2 ** self.downsampling

    @property
    def mem_dim(self):
        return self.enc_widths[-1]

    def to_dict(self):
        d = asdict(self)
        for k in ("enc_widths", "enc_strides", "dec_widths"):
            d[k] = list(d[k])
        return d

    @staticmethod
    def from_dict(d):
        return MAAMConfig(**d)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

def conv_bn_relu(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def up_bn_relu(cin, cout, dropout=0.0):
    """Exact 2x up-sampling: ConvTranspose 4x4, stride 2, padding 1 (no output_padding, which
    not every runtime handles), then BN, ReLU and optional dropout (training only)."""
    layers = [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
              nn.ReLU(inplace=True)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def l2_normalize(x, dim, eps=1e-8):
    # Written out (Mul/ReduceSum/Sqrt/Div) instead of F.normalize so that the exported graph only
    # uses the most basic ONNX ops.
    return x / torch.sqrt((x * x).sum(dim=dim, keepdim=True) + eps)


def cosine(a, b, dim=1):
    return (l2_normalize(a, dim) * l2_normalize(b, dim)).sum(dim=dim)


class Encoder(nn.Module):
    def __init__(self, cfg: MAAMConfig):
        super().__init__()
        blocks, cin = [], 1
        for c, s in zip(cfg.enc_widths, cfg.enc_strides):
            blocks.append(conv_bn_relu(cin, c, s))
            cin = c
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(x)


class Decoder(nn.Module):
    def __init__(self, cfg: MAAMConfig, cout):
        super().__init__()
        ups, cin = [], cfg.mem_dim
        for c in cfg.dec_widths:
            ups.append(up_bn_relu(cin, c, cfg.dropout))
            cin = c
        self.ups = nn.Sequential(*ups)
        self.out = nn.Conv2d(cin, cout, 3, 1, 1)

    def forward(self, z):
        return self.out(self.ups(z))


class Memory(nn.Module):
    """Memory of N normal prototypes with sparse (hard-shrunk) cosine addressing.

    z [B, C, h, w] -> z_hat [B, C, h, w] and the shrunk weights w' [B, h, w, N] (slots on the
    last axis: Softmax/ReduceSum then run over contiguous memory in the exported graph).

    w  = softmax_n(cos(z_ij, m_n) / T)
    w' = relu(w - lambda) * w / (|w - lambda| + eps)      (= w where w > lambda, else 0)
    w' = w' / (sum_n w'_n + eps)
    z_hat_ij = sum_n w'_n m_n

    Since softmax weights sum to 1, at least one weight is >= 1/N, so with lambda = 1/N at least
    one item survives unless all weights equal 1/N exactly (e.g. z_ij = 0, where z_hat_ij = 0).
    """

    def __init__(self, slots, dim, shrink_lambda, temperature=1.0, eps=1e-12):
        super().__init__()
        # the items are learned by back-propagation like any other weight (no separate update
        # rule), so they are a constant in the exported graph
        self.items = nn.Parameter(torch.empty(slots, dim))
        nn.init.uniform_(self.items, -1.0 / math.sqrt(dim), 1.0 / math.sqrt(dim))
        self.shrink_lambda = float(shrink_lambda)
        self.inv_t = 1.0 / float(temperature)
        self.eps = eps

    def forward(self, z):
        q = l2_normalize(z.permute(0, 2, 3, 1), dim=-1)               # [B, h, w, C]
        m = l2_normalize(self.items, dim=-1)                          # [N, C]
        sim = torch.matmul(q, m.t())                                  # [B, h, w, N] cosines
        w = torch.softmax(sim * self.inv_t if self.inv_t != 1.0 else sim, dim=-1)
        if self.shrink_lambda > 0:
            d = w - self.shrink_lambda
            w = F.relu(d) * w / (torch.abs(d) + self.eps)
            w = w / (w.sum(dim=-1, keepdim=True) + self.eps)
        z_hat = torch.matmul(w, self.items).permute(0, 3, 1, 2)      # [B, C, h, w]
        return z_hat, w


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

class MAAMNet(nn.Module):
    def __init__(self, cfg: MAAMConfig | None = None):
        super().__init__()
        self.cfg = cfg or MAAMConfig()
        c = self.cfg
        self.encoder = Encoder(c)
        self.memory = Memory(c.memory_slots, c.mem_dim, c.shrink_lambda, c.mem_temperature)
        self.app_decoder = Decoder(c, 1)
        self.mot_decoder = Decoder(c, 2)

    def forward_train(self, frame):
        z = self.encoder(frame)
        z_hat, w = self.memory(z)
        recon = torch.tanh(self.app_decoder(z_hat))
        flow = self.mot_decoder(z_hat)
        return dict(recon=recon, flow=flow, z=z, z_hat=z_hat, weights=w)

    def forward(self, frame):
        """Deployment signature: frame t [1,1,H,W] in [-1,1] -> reconstructed frame t
        [1,1,H,W] in [-1,1] and predicted flow F_{t->t+1} [1,2,H,W] (dx, dy) in pixels."""
        z = self.encoder(frame)
        z_hat, _ = self.memory(z)
        return torch.tanh(self.app_decoder(z_hat)), self.mot_decoder(z_hat)


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------

def maam_losses(model: MAAMNet, out: dict, frame: torch.Tensor, flow: torch.Tensor):
    """total = L_app + w_mot L_mot + w_spa L_spa + w_lat L_lat, and the parts (plus diagnostics
    that are not in the total: mean cosine between z and z_hat, active items per position)."""
    cfg = model.cfg
    l_app = F.mse_loss(out["recon"], frame)                                 # L2, frame
    l_mot = (out["flow"] - flow).abs().mean()                               # L1, flow (pixels)
    w = out["weights"]                                                      # [B, h, w, N]
    l_spa = (-w * torch.log(w + 1e-12)).sum(dim=-1).mean()                  # entropy per position
    cos = cosine(out["z"], out["z_hat"], dim=1)                             # [B, h, w]
    l_lat = F.relu(cfg.lat_zeta - cos).mean()                               # margin latent loss
    total = l_app + cfg.w_mot * l_mot + cfg.w_spa * l_spa + cfg.w_lat * l_lat
    parts = dict(app=l_app, mot=l_mot, spa=l_spa, lat=l_lat,
                 cos=cos.mean().detach(), active=(w > 0).float().sum(dim=-1).mean().detach())
    return total, parts


def count_params(model):
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------
# Export helpers
# --------------------------------------------------------------------------------------------

def _fold(conv, bn):
    """Returns conv with bn (eval statistics) folded into its weight and bias."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)       # [cout]
    shift = bn.bias.detach() - bn.running_mean * scale
    w = conv.weight.detach().clone()
    if isinstance(conv, nn.ConvTranspose2d):                                # [cin, cout, k, k]
        w = w * scale.view(1, -1, 1, 1)
    else:                                                                   # [cout, cin, k, k]
        w = w * scale.view(-1, 1, 1, 1)
    b = shift if conv.bias is None else conv.bias.detach() * scale + shift
    new = copy.deepcopy(conv)
    new.weight = nn.Parameter(w)
    new.bias = nn.Parameter(b)
    return new


def fold_batchnorm(model: MAAMNet) -> MAAMNet:
    """An eval-mode copy of `model` with every BatchNorm folded into the (transposed)
    convolution before it and dropout removed: the same function as model.eval(), and an
    exported graph of Conv/ConvTranspose + Relu only (no BatchNormalization nodes)."""
    m = copy.deepcopy(model).eval()
    for seq in list(m.modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        mods = list(seq)
        if len(mods) >= 2 and isinstance(mods[0], (nn.Conv2d, nn.ConvTranspose2d)) \
                and isinstance(mods[1], nn.BatchNorm2d):
            keep = [_fold(mods[0], mods[1])] + [x for x in mods[2:] if not isinstance(x, nn.Dropout)]
            for name in list(seq._modules):
                del seq._modules[name]
            for i, x in enumerate(keep):
                seq.add_module(str(i), x)
    return m
