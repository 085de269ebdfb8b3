"""USTN-DSC: keyframe-based video event restoration (`ustn-dsc` recipe).

Yang, Liu, Wu, Wu, Liu, "Video Event Restoration Based on Keyframes for Video Anomaly
Detection", CVPR 2023. See README.md ("USTN-DSC") for what is taken from the paper, what was
scaled down here, and why.

From a clip of T = 9 frames only the keyframes 1, (T-1)/2 + 1 = 5 and T = 9 are given (here:
frames t-8, t-4, t of a stream, oldest first); the network restores all 9 frames. Normal events
can be restored from their keyframes, abnormal ones (unusual objects or motion) much less so.
The U-shaped Swin Transformer Network with Dual Skip Connections is, in this implementation:

1. feature extractor, shared over the 3 keyframes: conv3x3 (1 -> `stem_ch`, full resolution)
   and a strided conv (`patch` x `patch`, stride `patch`) that embeds the frame as a token grid;
2. encoder: one stage per entry of `dims`, each a Swin block (window self-attention over the
   tokens of the *three keyframes together* in a `window` x `window` spatial window, i.e.
   3 * window^2 tokens per window; relative position bias over (time, y, x); shifted windows in
   every other stage) followed by a strided conv3x3/2 (downsampling);
3. bottleneck: temporal up-sampling 3 -> 9 time steps (`TemporalUp`, a learned linear map over
   (time x channels), see there why it is a ConvTranspose3d in disguise), then conv3x3 per frame;
4. decoder, one stage per encoder stage, deepest first: ConvTranspose2d 2x2/2 per frame, plus
   the **second skip connection** (the same-level encoder features temporally up-sampled 3 -> 9,
   added as a residual), then a Swin block whose attention is **window cross-attention** from the
   9 decoded frames' tokens (queries) to the 3 encoded keyframes' tokens of the same level and
   window (keys/values): the **first skip connection**;
5. output head: ConvTranspose2d to full resolution per frame, the stem features temporally
   up-sampled as a last residual, conv3x3 -> 1 channel, tanh: 9 frames in [-1, 1].

The output is tanh-bounded to the pixel range of the package ([-1, 1]) so that a restored frame
can never leave it and the PSNR of the score is on the same scale as the data.

Losses (paper): Charbonnier loss on the restored frames and an adjacent-frame-difference loss,
Charbonnier on (R_{i+1} - R_i) - (I_{i+1} - I_i) (`restoration_losses`).
Score (paper): per clip, the PSNR of the restored frame with the largest MSE; anomaly score
1 - minmax(PSNR) per video (evaluate/ustn_dsc.py; the Rust recipe computes the same).

Export constraints (tract and TensorRT): the deployed forward pass uses only Conv (2D, incl.
grouped), ConvTranspose (2D), MatMul, Softmax, Add/Sub/Mul/Div/Sqrt/ReduceMean (LayerNorm is
written out by hand, `LayerNorm`), Reshape, Transpose, Concat, Slice, LeakyRelu, Tanh. The
cyclic window shift is Slice + Concat (`roll2`), GELU is the tanh approximation written out
(`gelu_tanh`), attention masks and relative position biases are constants at a given input
size, every reshape uses Python ints (static shapes, no Shape op).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass
class USTNConfig:
    height: int = 128
    width: int = 192
    clip: int = 9                # T: frames of a clip; keyframes are 0, (T-1)/2, T-1
    stem_ch: int = 16            # full-resolution feature extractor channels
    patch: int = 4               # token grid stride of the feature extractor (1/patch resolution)
    dims: tuple = (32, 64)       # Swin stage widths; stage i runs at 1/(patch * 2^i)
    heads: tuple = (2, 4)
    window: int = 8              # spatial window (window x window tokens per frame)
    mlp_ratio: float = 2.0
    bottleneck_ch: int = 96      # channels after the last strided conv (1/(patch * 2^len(dims)))
    # losses: w_charb * Charbonnier(R, I) + w_diff * Charbonnier(dR - dI) over adjacent frames
    w_charb: float = 1.0
    w_diff: float = 1.0
    charb_eps: float = 1e-3

    def __post_init__(self):
        self.dims = tuple(int(d) for d in self.dims)
        self.heads = tuple(int(h) for h in self.heads)
        if len(self.dims) != len(self.heads) or not self.dims:
            raise ValueError("dims and heads need the same, non-zero number of entries")
        if any(d % h for d, h in zip(self.dims, self.heads)):
            raise ValueError("every stage width must be a multiple of its head count")
        if self.clip < 3 or self.clip % 2 == 0:
            raise ValueError("clip must be odd and >= 3 (keyframes first, middle, last)")
        m = self.min_multiple
        if self.height % m or self.width % m:
            raise ValueError(f"height and width must be multiples of {m} (patch * 2^(stages-1) * window, and "
                             f"patch * 2^stages for the bottleneck)")

    @property
    def keyframes(self):
        return (0, (self.clip - 1) // 2, self.clip - 1)

    @property
    def min_multiple(self):
        """Input (and training crop) sizes must be multiples of this."""
        deep = self.patch * 2 ** (len(self.dims) - 1)
        return int(np.lcm(deep * self.window, deep * 2))

    def to_dict(self):
        d = asdict(self)
        d["dims"], d["heads"] = list(self.dims), list(self.heads)
        return d

    @staticmethod
    def from_dict(d):
        return USTNConfig(**d)


# --------------------------------------------------------------------------------------------
# Export-friendly primitives
# --------------------------------------------------------------------------------------------

class LayerNorm(nn.Module):
    """LayerNorm over the last axis from ReduceMean/Sub/Mul/Add/Sqrt/Div: opset 17 would otherwise
    export F.layer_norm as the LayerNormalization op, which the deployment contract excludes."""

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        d = x - mu
        var = (d * d).mean(-1, keepdim=True)
        return d / torch.sqrt(var + self.eps) * self.weight + self.bias


def gelu_tanh(x):
    """GELU, tanh approximation, written out (Mul/Add/Tanh: no Erf, no Gelu op at opset 17)."""
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def roll2(x, s, dims=(2, 3)):
    """torch.roll(x, (s, s), dims) as two Slice + Concat (the exporter's roll is not guaranteed
    to stay Slice + Concat; this is)."""
    for d in dims:
        n = int(x.shape[d])
        k = s % n
        if k:
            x = torch.cat([x.narrow(d, n - k, k), x.narrow(d, 0, n - k)], d)
    return x


def window_partition(x, ws):
    """[B, T, H, W, C] -> [B * nW, T * ws * ws, C]; a window's tokens ordered (t, y, x)."""
    B, T, H, W, C = (int(s) for s in x.shape)
    x = x.reshape(B, T, H // ws, ws, W // ws, ws, C).permute(0, 2, 4, 1, 3, 5, 6)
    return x.reshape(B * (H // ws) * (W // ws), T * ws * ws, C)


def window_reverse(xw, ws, B, T, H, W):
    """Inverse of window_partition."""
    C = int(xw.shape[-1])
    x = xw.reshape(B, H // ws, W // ws, T, ws, ws, C).permute(0, 3, 1, 4, 2, 5, 6)
    return x.reshape(B, T, H, W, C)


def to_tokens(x, B, T):
    """[B*T, C, H, W] (conv layout) -> [B, T, H, W, C] (token layout)."""
    _, C, H, W = (int(s) for s in x.shape)
    return x.reshape(B, T, C, H, W).permute(0, 1, 3, 4, 2)


def to_maps(x):
    """[B, T, H, W, C] -> [B*T, C, H, W]."""
    B, T, H, W, C = (int(s) for s in x.shape)
    return x.permute(0, 1, 4, 2, 3).reshape(B * T, C, H, W)


_MASKS = {}


def shift_mask(H, W, ws, s):
    """Swin's attention mask for cyclically shifted windows, per window and spatial token pair:
    [nW, ws*ws, ws*ws] float32, 0 where both tokens come from the same region of the unshifted
    image, -100 elsewhere (tokens that only meet because of the cyclic wrap). Spatial only, the
    attention adds it to every (query frame, key frame) pair by broadcasting, which keeps the
    constant small (nW * ws^4 values instead of nW * (Tq ws^2) * (Tk ws^2))."""
    key = (H, W, ws, s)
    if key not in _MASKS:
        img = np.zeros((H, W), np.int64)
        cnt = 0
        for ys in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            for xs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                img[ys, xs] = cnt
                cnt += 1
        win = img.reshape(H // ws, ws, W // ws, ws).transpose(0, 2, 1, 3).reshape(-1, ws * ws)
        m = np.where(win[:, :, None] != win[:, None, :], -100.0, 0.0).astype(np.float32)
        _MASKS[key] = torch.from_numpy(m)
    return _MASKS[key]


# --------------------------------------------------------------------------------------------
# Swin blocks
# --------------------------------------------------------------------------------------------

class WindowAttention(nn.Module):
    """Multi-head attention inside a spatial window over several frames.

    Queries are the tokens of `q_times` frames, keys/values those of `k_times` frames (the same
    frames for self-attention, the 3 keyframes for the decoder's cross-attention); a window holds
    len(times) * ws^2 tokens ordered (t, y, x). Relative position bias as in Swin, extended to
    time and factorised: B[h, (tq, p), (tk, p')] = B_t[h, tq - tk] + B_xy[h, p - p'], with tq, tk
    the frames' positions in the clip (0..T-1), so a decoded frame knows how far it is from each
    keyframe. The bias is a function of parameters only: a constant in the exported graph."""

    def __init__(self, dim, heads, ws, q_times, k_times, clip):
        super().__init__()
        self.dim, self.heads, self.ws = dim, heads, ws
        self.tq, self.tk = len(q_times), len(k_times)
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.table_xy = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.table_t = nn.Parameter(torch.zeros(2 * clip - 1, heads))
        nn.init.trunc_normal_(self.table_xy, std=0.02)
        nn.init.trunc_normal_(self.table_t, std=0.02)
        yy, xx = np.meshgrid(np.arange(ws), np.arange(ws), indexing="ij")
        p = np.stack([yy.ravel(), xx.ravel()], 1)                     # [S, 2]
        rel = p[:, None, :] - p[None, :, :] + (ws - 1)                # [S, S, 2] in [0, 2ws-2]
        idx_xy = rel[..., 0] * (2 * ws - 1) + rel[..., 1]
        idx_t = np.asarray(q_times)[:, None] - np.asarray(k_times)[None, :] + (clip - 1)
        self.register_buffer("idx_xy", torch.from_numpy(idx_xy).long(), persistent=False)
        self.register_buffer("idx_t", torch.from_numpy(idx_t).long(), persistent=False)

    def freeze_bias(self):
        """Stores bias() as a buffer that forward uses from then on (export: one constant instead of
        the Gather/Unsqueeze/Add of its computation; training keeps computing it)."""
        with torch.no_grad():
            self.register_buffer("frozen_bias", self.bias().detach().clone(), persistent=False)

    def bias(self):
        if getattr(self, "frozen_bias", None) is not None:
            return self.frozen_bias
        S, h = self.ws * self.ws, self.heads
        bxy = self.table_xy[self.idx_xy]                               # [S, S, h]
        bt = self.table_t[self.idx_t]                                  # [Tq, Tk, h]
        b = bt[:, None, :, None, :] + bxy[None, :, None, :, :]         # [Tq, S, Tk, S, h]
        return b.permute(4, 0, 1, 2, 3).reshape(h, self.tq * S, self.tk * S)

    def forward(self, xq, xkv, mask=None):
        """xq [Bw, Tq*S, C], xkv [Bw, Tk*S, C], mask None or [nW, S, S] (Bw = B * nW)."""
        Bw, Nq, C = (int(s) for s in xq.shape)
        Nk = int(xkv.shape[1])
        h, d, S = self.heads, C // self.heads, self.ws * self.ws
        q = self.q(xq).reshape(Bw, Nq, h, d).permute(0, 2, 1, 3)      # [Bw, h, Nq, d]
        k = self.k(xkv).reshape(Bw, Nk, h, d).permute(0, 2, 3, 1)     # [Bw, h, d, Nk]
        v = self.v(xkv).reshape(Bw, Nk, h, d).permute(0, 2, 1, 3)     # [Bw, h, Nk, d]
        a = torch.matmul(q * self.scale, k) + self.bias()
        if mask is not None:
            nW = int(mask.shape[0])
            a = a.reshape(Bw // nW, nW, h, self.tq, S, self.tk, S) + mask.reshape(1, nW, 1, 1, S, 1, S)
            a = a.reshape(Bw, h, Nq, Nk)
        a = torch.softmax(a, dim=-1)
        o = torch.matmul(a, v).permute(0, 2, 1, 3).reshape(Bw, Nq, C)
        return self.proj(o)


class SwinBlock(nn.Module):
    """Pre-norm Swin block on token grids [B, T, H, W, C]: x + WA(LN(x) [, LN(kv)]), then
    x + MLP(LN(x)). Self-attention when `k_times` is None (encoder: the keyframes attend to each
    other), cross-attention from x to `kv` otherwise (decoder: the first skip connection).
    `shift` > 0: cyclically shifted windows (Swin's SW-MSA) with the region mask."""

    def __init__(self, dim, heads, ws, shift, q_times, k_times, clip, mlp_ratio):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.cross = k_times is not None
        self.norm_q = LayerNorm(dim)
        self.norm_kv = LayerNorm(dim) if self.cross else None
        self.attn = WindowAttention(dim, heads, ws, q_times, k_times if self.cross else q_times, clip)
        self.norm_mlp = LayerNorm(dim)
        hid = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hid)
        self.fc2 = nn.Linear(hid, dim)

    def forward(self, x, kv=None):
        B, T, H, W, _ = (int(s) for s in x.shape)
        ws, s = self.ws, self.shift
        xn = self.norm_q(x)
        kn = self.norm_kv(kv) if self.cross else None
        mask = None
        if s:
            xn = roll2(xn, -s)
            kn = roll2(kn, -s) if kn is not None else None
            mask = shift_mask(H, W, ws, s).to(x.device)
        qw = window_partition(xn, ws)
        kw = window_partition(kn, ws) if kn is not None else qw
        o = window_reverse(self.attn(qw, kw, mask), ws, B, T, H, W)
        if s:
            o = roll2(o, s)
        x = x + o
        return x + self.fc2(gelu_tanh(self.fc1(self.norm_mlp(x))))


class TemporalUp(nn.Module):
    """Temporal up-sampling of per-frame feature maps from t_in to t_out time steps.

    Input [B*t_in, cin, H, W] (frames consecutive per sample), output [B*t_out, cout, H, W]. The
    frames are stacked on channels and mapped by a 1x1 Conv2d: with `depthwise` (cin == cout),
    a free t_out x t_in matrix per channel (grouped conv, groups = C); otherwise one free linear
    map from (t_in x cin) to (t_out x cout) values per pixel.

    Why this is the paper's 3D deconvolution: a ConvTranspose3d with kernel (k, 1, 1) and stride
    (s, 1, 1) from 3 to 9 time steps is, at every pixel, a linear map from the (3 x cin) input
    values to the (9 x cout) outputs whose matrix has a banded, weight-tied structure; the
    non-depthwise layer here is the same map with all entries free (a superset), the depthwise
    one the per-channel special case. It exports as a plain 2D Conv (no Conv3d / ConvTranspose3d,
    which tract and TensorRT handle poorly or not at all)."""

    def __init__(self, cin, cout, t_in, t_out, depthwise):
        super().__init__()
        self.t_in, self.t_out, self.cin, self.cout, self.dw = t_in, t_out, cin, cout, depthwise
        if depthwise:
            assert cin == cout
            self.conv = nn.Conv2d(cin * t_in, cin * t_out, 1, groups=cin)
            with torch.no_grad():  # start as linear interpolation in time of the t_in frames
                w = torch.from_numpy(_lerp_matrix(t_in, t_out)).float()      # [t_out, t_in]
                self.conv.weight.copy_(w.repeat(cin, 1)[:, :, None, None])
                self.conv.bias.zero_()
        else:
            self.conv = nn.Conv2d(cin * t_in, cout * t_out, 1)

    def forward(self, x):
        BT, C, H, W = (int(s) for s in x.shape)
        B = BT // self.t_in
        if self.dw:  # channels ordered (c, t): [B, C*t_in] -> [B, C*t_out] -> (t, c)
            y = x.reshape(B, self.t_in, C, H, W).permute(0, 2, 1, 3, 4).reshape(B, C * self.t_in, H, W)
            y = self.conv(y).reshape(B, C, self.t_out, H, W).permute(0, 2, 1, 3, 4)
            return y.reshape(B * self.t_out, C, H, W)
        y = self.conv(x.reshape(B, self.t_in * C, H, W))               # channels ordered (t, c)
        return y.reshape(B * self.t_out, self.cout, H, W)


def _lerp_matrix(t_in, t_out):
    """[t_out, t_in]: linear interpolation of t_in evenly spaced keyframes at t_out positions."""
    m = np.zeros((t_out, t_in))
    for j in range(t_out):
        p = j * (t_in - 1) / (t_out - 1)
        i = min(int(math.floor(p)), t_in - 2)
        f = p - i
        m[j, i], m[j, i + 1] = 1 - f, f
    return m


def lrelu(x):
    return F.leaky_relu(x, 0.2)


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------

class USTNDSC(nn.Module):
    def __init__(self, cfg: USTNConfig | None = None):
        super().__init__()
        self.cfg = c = cfg or USTNConfig()
        T, key, ws, n = c.clip, c.keyframes, c.window, len(c.dims)
        all_t = tuple(range(T))
        # 1. feature extractor (shared over the keyframes)
        self.stem = nn.Conv2d(1, c.stem_ch, 3, 1, 1)
        self.embed = nn.Conv2d(c.stem_ch, c.dims[0], c.patch, c.patch)
        # 2. encoder: Swin block (W-MSA / SW-MSA alternating) + strided conv per stage
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        for i, (d, h) in enumerate(zip(c.dims, c.heads)):
            self.enc.append(SwinBlock(d, h, ws, (ws // 2) * (i % 2), key, None, T, c.mlp_ratio))
            nxt = c.dims[i + 1] if i + 1 < n else c.bottleneck_ch
            self.down.append(nn.Conv2d(d, nxt, 3, 2, 1))
        # 3. bottleneck: 3 -> 9 time steps, then a conv per frame
        self.bott_up = TemporalUp(c.bottleneck_ch, c.bottleneck_ch, 3, T, depthwise=False)
        self.bott_conv = nn.Conv2d(c.bottleneck_ch, c.bottleneck_ch, 3, 1, 1)
        # 4. decoder, deepest stage first
        self.up = nn.ModuleList()
        self.skip_up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(n)):
            d, h = c.dims[i], c.heads[i]
            prev = c.dims[i + 1] if i + 1 < n else c.bottleneck_ch
            self.up.append(nn.ConvTranspose2d(prev, d, 2, 2))
            self.skip_up.append(TemporalUp(d, d, 3, T, depthwise=True))
            self.dec.append(SwinBlock(d, h, ws, (ws // 2) * ((n - 1 - i) % 2), all_t, key, T, c.mlp_ratio))
        # 5. output head
        self.head_up = nn.ConvTranspose2d(c.dims[0], c.stem_ch, c.patch, c.patch)
        self.head_skip = TemporalUp(c.stem_ch, c.stem_ch, 3, T, depthwise=True)
        self.head_out = nn.Conv2d(c.stem_ch, 1, 3, 1, 1)

    def forward(self, keyframes):
        """keyframes [B, 3, H, W] (frames t-8, t-4, t in [-1, 1]) -> clip [B, 9, H, W] (t-8..t)."""
        c = self.cfg
        B, K, H, W = (int(s) for s in keyframes.shape)
        T = c.clip
        x = keyframes.reshape(B * K, 1, H, W)
        stem = lrelu(self.stem(x))                                      # [B*3, stem, H, W]
        x = lrelu(self.embed(stem))                                     # [B*3, d0, H/p, W/p]
        skips = []
        for blk, down in zip(self.enc, self.down):
            x = to_maps(blk(to_tokens(x, B, K)))
            skips.append(x)
            x = lrelu(down(x))
        x = lrelu(self.bott_up(x))                                      # [B*9, cb, ...]
        x = lrelu(self.bott_conv(x))
        for up, sk_up, blk, skip in zip(self.up, self.skip_up, self.dec, reversed(skips)):
            x = lrelu(up(x)) + sk_up(skip)                              # second skip: temporal residual
            x = to_maps(blk(to_tokens(x, B, T), to_tokens(skip, B, K)))  # first skip: cross-attention
        x = lrelu(self.head_up(x) + self.head_skip(stem))
        return torch.tanh(self.head_out(x)).reshape(B, T, H, W)


def freeze_for_export(model: USTNDSC):
    """Eval mode, relative position biases frozen into constants (`WindowAttention.freeze_bias`);
    the same maths as the trained model, in the ops of the deployment contract."""
    model.eval()
    for m in model.modules():
        if isinstance(m, WindowAttention):
            m.freeze_bias()
    return model


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------

def charbonnier(x, eps):
    return torch.sqrt(x * x + eps * eps).mean()


def restoration_losses(cfg: USTNConfig, pred, clip):
    """pred, clip [B, T, H, W] in [-1, 1] -> (total, {term: value}).

    L_charb = mean sqrt((R - I)^2 + eps^2); L_diff = the same on the adjacent-frame differences,
    (R_{i+1} - R_i) - (I_{i+1} - I_i), which asks for the right motion between restored frames
    and not only for the right frames."""
    l_c = charbonnier(pred - clip, cfg.charb_eps)
    dp = pred[:, 1:] - pred[:, :-1]
    dc = clip[:, 1:] - clip[:, :-1]
    l_d = charbonnier(dp - dc, cfg.charb_eps)
    total = cfg.w_charb * l_c + cfg.w_diff * l_d
    return total, {"charb": l_c.detach(), "diff": l_d.detach()}


def count_params(module):
    return sum(p.numel() for p in module.parameters())


def param_groups(model: USTNDSC):
    """Parameter counts per part, for the logs and the README."""
    parts = {"extractor": [model.stem, model.embed], "encoder": [model.enc, model.down],
             "bottleneck": [model.bott_up, model.bott_conv],
             "decoder": [model.up, model.skip_up, model.dec],
             "head": [model.head_up, model.head_skip, model.head_out]}
    out = {k: sum(count_params(m) for m in v) for k, v in parts.items()}
    out["total"] = count_params(model)
    return out
