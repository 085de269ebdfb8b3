"""BDFI: Bi-directional Frame Interpolation for unsupervised video anomaly detection.

Deng, Zhang, Zou, Li, "Bi-directional Frame Interpolation for Unsupervised Video Anomaly
Detection", WACV 2023, pp. 2634-2643 (see README.md for what is taken from the paper and what
was chosen here).

The framework (paper, Sec. 3 / Fig. 2) has two networks optimised jointly, end to end:

1. an optical-flow estimator (a U-Net) that sees only the two neighbours I_{t-1}, I_{t+1} and
   predicts the flows from the (unseen) middle frame to each of them, F_{t->t-1} and F_{t->t+1}.
   There is no flow supervision and no external flow network; the flows are learned through a
   photometric warping loss. Because the estimator never sees I_t, it can only produce the
   "regular" motion it has learned on normal data: this is the implicit motion constraint that
   makes abnormal motion hard to interpolate;
2. an interpolation network (a U-Net) that takes the two backward-warped neighbours, the two
   neighbours and the two flows and synthesises I_t. It has no output residual (the frame is not
   "warped average + correction"), so everything it outputs has gone through its features, and a
   dynamic memory of normal prototypes sits in front of its output layer.

Dynamic memory (the paper's contribution on top of MNAD-style memories, Park et al. CVPR 2020):
N memory items; every query q_ij (one per feature position) is read as a softmax-weighted sum of
only its top-K most similar items (N=10, K=5 here, as in the project's recipe table). Top-1
(hard) addressing is too sparse to represent the diversity of normal patterns, dense addressing
over all N items lets abnormal queries be reconstructed from mixtures; top-K balances the two.
In the shipped package the read vector v_ij replaces the query in front of the output layer
(`readout = "v"`), which attenuates features the memory cannot express; the paper's read-out is
q_ij + v_ij (`readout = "sum"`), which lets a query pass the memory by (docs/models.md has the
ablation). ||v_ij - q_ij|| (the memory addressing error) is the second anomaly score.

Everything in the forward pass is ONNX/tract friendly: Conv, ConvTranspose, LeakyReLU, Concat,
GridSample (opset 16+), TopK, Softmax, ReduceSum, Sqrt, Where, Tanh. Shapes are static.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass
class BDFIConfig:
    height: int = 128
    width: int = 192
    # U-Net widths per level (full, 1/2, 1/4, 1/8 resolution). Scaled down from the paper's
    # (MNAD-style 64..512) widths so that training fits in ~30 min on 2 CPU cores.
    flow_widths: tuple = (8, 16, 32, 48)
    interp_widths: tuple = (12, 24, 32, 48)
    mem_level: int = 0           # U-Net level of the memory (0 = full res, before the output layer)
    mem_dim: int = 16            # channels of the memory queries / items
    memory_slots: int = 10       # N
    top_k: int = 5               # K
    mem_temperature: float = 0.1  # softmax temperature over cosine similarities
    # How the flows are estimated. "middle" (the shipped package): the estimator predicts
    # F_{t->t-1}, F_{t->t+1} directly and the warp loss compares the warped neighbours with I_t.
    # "bidirectional" (the paper, eq. 3-4 and 12): it predicts F_{t-1->t+1} and F_{t+1->t-1},
    # the flows from the middle frame are them scaled linearly to t (F_{t->t-1} = F_{t+1->t-1} / 2,
    # F_{t->t+1} = F_{t-1->t+1} / 2), and the warp loss compares each input with the other
    # warped onto it.
    flow_mode: str = "middle"
    # "v" (the shipped package): the read vector replaces the query; "sum" (the paper): q + v.
    readout: str = "v"
    # Loss weights, the intensity loss at 1. The shipped package's; the paper's are
    # lambda_SSIM = 1e-4, lambda_con = 1, lambda_div = 1e-4 (warp: not given, 0.5 here).
    # docs/models.md has the ablation that kept these: the paper's configuration
    # (--set flow_mode=bidirectional --set readout=sum --set w_ssim=1e-4 --set w_con=1
    # --set w_div=1e-4) rated worse on pseudo-anomalies at this width.
    w_frame: float = 1.0         # L2 intensity loss
    w_ssim: float = 0.2          # 1 - SSIM
    w_warp: float = 0.5          # photometric L1 of the warped frames
    w_con: float = 0.1           # memory compactness ||v - q||
    w_div: float = 0.1           # memory diversity (item separateness)
    w_smooth: float = 0.0        # optional first-order flow smoothness (off by default)

    def to_dict(self):
        d = asdict(self)
        d["flow_widths"] = list(self.flow_widths)
        d["interp_widths"] = list(self.interp_widths)
        return d

    @staticmethod
    def from_dict(d):
        d = dict(d)
        # checkpoints from before the choice existed (their configs lack the keys)
        d.setdefault("flow_mode", "middle")
        d.setdefault("readout", "v")
        if d["flow_mode"] not in ("bidirectional", "middle") or d["readout"] not in ("sum", "v"):
            raise ValueError(f"BDFIConfig: flow_mode {d['flow_mode']!r} / readout {d['readout']!r} unknown")
        d["flow_widths"] = tuple(d["flow_widths"])
        d["interp_widths"] = tuple(d["interp_widths"])
        return BDFIConfig(**d)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

def conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1, inplace=True))


class UNet(nn.Module):
    """Four-level U-Net (3 down-samplings by strided conv, 3 up-samplings by 2x2 transposed conv,
    skip connections by concatenation). Returns the full-resolution decoder features; the caller
    adds its own output layer."""

    def __init__(self, cin, widths):
        super().__init__()
        c0, c1, c2, c3 = widths
        self.e0 = nn.Sequential(conv(cin, c0), conv(c0, c0))
        self.e1 = nn.Sequential(conv(c0, c1, 2), conv(c1, c1))
        self.e2 = nn.Sequential(conv(c1, c2, 2), conv(c2, c2))
        self.e3 = nn.Sequential(conv(c2, c3, 2), conv(c3, c3))
        self.u2 = nn.ConvTranspose2d(c3, c2, 2, 2)
        self.d2 = conv(2 * c2, c2)
        self.u1 = nn.ConvTranspose2d(c2, c1, 2, 2)
        self.d1 = conv(2 * c1, c1)
        self.u0 = nn.ConvTranspose2d(c1, c0, 2, 2)
        self.d0 = conv(2 * c0, c0)
        self.out_channels = c0

    def forward(self, x, hook=None, hook_level=-1):
        """hook(features) -> features is applied to the decoder-side features of `hook_level`
        (3 = bottleneck at 1/8, 2 = decoder at 1/4, 1 = 1/2, 0 = last full-resolution features)."""
        h = hook if hook is not None else (lambda f: f)
        x0 = self.e0(x)
        x1 = self.e1(x0)
        x2 = self.e2(x1)
        x3 = self.e3(x2)
        y = h(x3) if hook_level == 3 else x3
        y = self.d2(torch.cat([self.u2(y), x2], 1))
        y = h(y) if hook_level == 2 else y
        y = self.d1(torch.cat([self.u1(y), x1], 1))
        y = h(y) if hook_level == 1 else y
        y = self.d0(torch.cat([self.u0(y), x0], 1))
        y = h(y) if hook_level == 0 else y
        return y


def l2_normalize(x, dim=1, eps=1e-6):
    # Written out (Mul/ReduceSum/Sqrt/Div) instead of F.normalize so that the exported graph only
    # uses the most basic ONNX ops.
    return x / torch.sqrt((x * x).sum(dim=dim, keepdim=True) + eps)


class Warp(nn.Module):
    """Backward warping with bilinear sampling: out(p) = img(p + flow(p)), flow in pixels
    (channel 0 = x, channel 1 = y). align_corners=True everywhere: pixel centres of the first and
    last column map exactly to -1 and +1, so a pixel displacement d is 2*d/(W-1) in grid units."""

    def __init__(self, height, width):
        super().__init__()
        # base grid in normalised coordinates [1, H, W, 2] and pixel->grid scale [1, 1, 1, 2]
        base, scale = self.make_grid(height, width)
        self.register_buffer("base", base, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        # Export switch: the same sampling written as four element gathers. tract's GridSample
        # took 22 % of the network's time; gathers plus arithmetic are a fraction of that, and
        # TensorRT has both. Training keeps F.grid_sample (random crops, fused kernels).
        self.gather = False

    @staticmethod
    def make_grid(height, width, device=None):
        ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=device),
                                torch.arange(width, dtype=torch.float32, device=device),
                                indexing="ij")
        base = torch.stack([xs / (width - 1) * 2 - 1, ys / (height - 1) * 2 - 1], dim=-1)
        scale = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)], device=device)
        return base.unsqueeze(0), scale.view(1, 1, 1, 2)

    def forward(self, img, flow):
        h, w = img.shape[-2:]
        if (h, w) == tuple(self.base.shape[1:3]):
            base, scale = self.base, self.scale          # the deployment geometry: constants
        else:
            base, scale = self.make_grid(h, w, img.device)  # training on random crops
        if self.gather:
            return warp_gather(img, flow)
        grid = base + flow.permute(0, 2, 3, 1) * scale
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)


def warp_gather(img, flow):
    """F.grid_sample(bilinear, border, align_corners=True) at pixel positions p + flow(p),
    written with gathers: the sampling position is clamped to the image (border padding) and
    the four neighbours are blended with bilinear weights."""
    b, c, h, w = img.shape
    ys = torch.arange(h, dtype=img.dtype, device=img.device).view(1, h, 1)
    xs = torch.arange(w, dtype=img.dtype, device=img.device).view(1, 1, w)
    x = (xs + flow[:, 0]).clamp(0, w - 1)
    y = (ys + flow[:, 1]).clamp(0, h - 1)
    x0, y0 = x.floor(), y.floor()
    wx, wy = (x - x0).unsqueeze(1), (y - y0).unsqueeze(1)
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = img.reshape(b, c, h * w)

    def at(yy, xx):
        # index arithmetic in float32 (exact below 2^24 pixels), one cast: integer element-wise
        # ops are slow paths in some runtimes
        idx = (yy * w + xx).long().reshape(b, 1, h * w).expand(b, c, h * w)
        return torch.gather(flat, 2, idx).reshape(b, c, h, w)

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


class DynamicMemory(nn.Module):
    """Top-K dynamic memory read (paper Sec. 3, "dynamic memory").

    q: [B, D, H, W] queries (L2-normalised per position); items m_n (L2-normalised), n = 1..N.
    s_ij,n = <q_ij, m_n> (cosine similarity); only the K largest s_ij,n per position are kept;
    w_ij = softmax over those K of s/τ; v_ij = Σ_n w_ij,n m_n.
    Returns v [B,D,H,W] and the addressing error e_ij = ||v_ij - q_ij||_2 as [B,1,H,W].

    The similarities and the read are matrix products with the item matrix, the top-K selection
    is TopK (for the K-th largest value) + a comparison mask; no gather is needed, which keeps
    the exported graph simple for tract and TensorRT.
    """

    def __init__(self, slots, dim, top_k, temperature):
        super().__init__()
        assert 1 <= top_k <= slots
        self.items = nn.Parameter(torch.randn(slots, dim))
        self.top_k = top_k
        self.inv_t = 1.0 / temperature
        self.last_weights = None

    def normalized_items(self):
        return l2_normalize(self.items, dim=1)

    def forward(self, q):
        m = self.normalized_items()                                   # [N, D]
        # Slots on the last axis: TopK and Softmax then reduce over contiguous memory, which
        # made the exported memory 3x faster in tract than the same maths over axis 1
        # (docs/benchmarks.md). Numerically the same model as the axis-1 form it was trained in.
        sim = torch.matmul(q.permute(0, 2, 3, 1), m.t())             # [B, H, W, N]
        kth = torch.topk(sim, self.top_k, dim=-1).values[..., -1:]   # [B, H, W, 1]
        # scalar fill (not a full tensor) so the export does not fold a [1,H,W,N] constant
        logits = (sim * self.inv_t).masked_fill(sim < kth, -1e4)
        w = torch.softmax(logits, dim=-1)                            # zero outside the top-K
        v = torch.matmul(w, m).permute(0, 3, 1, 2)                   # [B, D, H, W]
        err = torch.sqrt(((v - q) ** 2).sum(dim=1, keepdim=True) + 1e-8)
        # for the usage-diversity loss, as [B, N, H, W]
        self.last_weights = w.permute(0, 3, 1, 2) if self.training else None
        return v, err


# --------------------------------------------------------------------------------------------
# The two networks and the full model
# --------------------------------------------------------------------------------------------

class FlowEstimator(nn.Module):
    """U-Net: (I_{t-1}, I_{t+1}) -> two flows in pixels: (F_{t->t-1}, F_{t->t+1}) in flow_mode
    "middle", (F_{t+1->t-1}, F_{t-1->t+1}) in flow_mode "bidirectional"."""

    def __init__(self, widths):
        super().__init__()
        self.net = UNet(2, widths)
        self.out = nn.Conv2d(self.net.out_channels, 4, 3, 1, 1)
        # zero flow at initialisation = identity warp; training starts from "frame averaging"
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, prev, nxt):
        f = self.out(self.net(torch.cat([prev, nxt], 1)))
        return f[:, 0:2], f[:, 2:4]


class Interpolator(nn.Module):
    """U-Net: (warped prev, warped next, prev, next, flows) -> I_t, with no output residual and the
    dynamic memory on the features of level `cfg.mem_level` (0 = the last full-resolution
    features, right before the output layer; 3 = the 1/8-resolution bottleneck). At level 0 the
    output layer reads q + v (cfg.readout "sum", the paper) or v alone ("v"); deeper, [q, v] is
    projected back to the U-Net width by a 1x1 conv."""

    FLOW_INPUT_SCALE = 0.25  # flows are a few pixels; bring them to the range of the images

    def __init__(self, cfg: BDFIConfig):
        super().__init__()
        self.net = UNet(8, cfg.interp_widths)
        self.level = cfg.mem_level
        c = cfg.interp_widths[self.level]
        self.query = nn.Conv2d(c, cfg.mem_dim, 1)
        self.memory = DynamicMemory(cfg.memory_slots, cfg.mem_dim, cfg.top_k, cfg.mem_temperature)
        # inside the U-Net (level > 0) the decoder gets [q, v] (as in MNAD): with skip connections
        # a decoder fed with v alone can ignore the bottleneck, and the queries then collapse
        self.back = nn.Conv2d(2 * cfg.mem_dim, c, 1) if self.level > 0 else nn.Identity()
        self.readout = cfg.readout
        c_out = cfg.mem_dim if self.level == 0 else cfg.interp_widths[0]
        self.out = nn.Conv2d(c_out, 1, 3, 1, 1)

    def forward(self, w_prev, w_next, prev, nxt, f_prev, f_next):
        s = self.FLOW_INPUT_SCALE
        x = torch.cat([w_prev, w_next, prev, nxt, f_prev * s, f_next * s], 1)
        st = {}

        def mem(feat):
            q = l2_normalize(self.query(feat), dim=1)
            v, err = self.memory(q)
            st.update(q=q, v=v, err=err)
            if self.level > 0:
                return self.back(torch.cat([q, v], 1))
            return q + v if self.readout == "sum" else v

        y = self.net(x, mem, self.level)
        frame = torch.tanh(self.out(y))
        return frame, st["err"], st["q"], st["v"]


class BDFI(nn.Module):
    def __init__(self, cfg: BDFIConfig | None = None):
        super().__init__()
        self.cfg = cfg or BDFIConfig()
        self.flow = FlowEstimator(self.cfg.flow_widths)
        self.warp = Warp(self.cfg.height, self.cfg.width)
        self.interp = Interpolator(self.cfg)

    def forward_train(self, prev, nxt, cross=True):
        """Every intermediate the losses need; `cross` adds, in flow_mode "bidirectional", each
        input warped onto the other (eq. 12's warp loss; the deployed forward does not need it)."""
        a, b = self.flow(prev, nxt)
        out = {}
        if self.cfg.flow_mode == "bidirectional":
            # a = F_{t+1->t-1}, b = F_{t-1->t+1}; linear motion: half of each from the middle
            f_prev, f_next = 0.5 * a, 0.5 * b
            if cross:
                out.update(x_next=self.warp(prev, a), x_prev=self.warp(nxt, b), prev=prev, nxt=nxt)
        else:
            f_prev, f_next = a, b
        w_prev = self.warp(prev, f_prev)
        w_next = self.warp(nxt, f_next)
        frame, err, q, v = self.interp(w_prev, w_next, prev, nxt, f_prev, f_next)
        out.update(frame=frame, mem_err=err, q=q, v=v, w_prev=w_prev, w_next=w_next,
                   f_prev=f_prev, f_next=f_next)
        return out

    def forward(self, prev, nxt):
        """Deployment signature: inputs prev/next [1,1,H,W] in [-1,1]; outputs frame [1,1,H,W] in
        [-1,1], mem_err [1,1,H,W] and flow [1,1,H,W], the mean magnitude (pixels) of the two
        estimated flows 0.5 * (|F_t->t-1| + |F_t->t+1|). `flow` is not in the paper's score; the
        `bdfi` recipe uses it when [params] flow_weight > 0 (docs/models.md explains why)."""
        o = self.forward_train(prev, nxt, cross=False)
        return o["frame"], o["mem_err"], flow_magnitude(o["f_prev"], o["f_next"])


def flow_magnitude(f_prev, f_next):
    """Mean end-point magnitude of the two flows [B,2,H,W] -> [B,1,H,W]."""
    mag = lambda f: torch.sqrt((f * f).sum(dim=1, keepdim=True) + 1e-12)
    return 0.5 * (mag(f_prev) + mag(f_next))


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------

def _gaussian_window(size=11, sigma=1.5, device=None):
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - size // 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size).to(device)


def ssim(a, b, window=None):
    """Mean SSIM (Wang et al. 2004, 11x11 Gaussian, σ=1.5) for images in [-1,1]."""
    a = (a + 1) * 0.5
    b = (b + 1) * 0.5
    w = window if window is not None else _gaussian_window(device=a.device)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a = F.conv2d(a, w)
    mu_b = F.conv2d(b, w)
    saa = F.conv2d(a * a, w) - mu_a ** 2
    sbb = F.conv2d(b * b, w) - mu_b ** 2
    sab = F.conv2d(a * b, w) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return s.mean()


def smoothness(flow):
    return (flow[:, :, :, 1:] - flow[:, :, :, :-1]).abs().mean() + \
           (flow[:, :, 1:, :] - flow[:, :, :-1, :]).abs().mean()


def diversity_loss(items, weights=None):
    """Memory diversity, two parts.

    1. Item separateness: penalise positive cosine similarity between distinct items so that the
       N prototypes stay spread out (the role of MNAD's separateness loss; acts on the items here
       because the items are learned by back-propagation).
    2. Usage diversity: log N - H(p), p = addressing weights averaged over the batch and all
       positions. Without it, compactness is trivially satisfied by collapsing every query onto
       one item (observed: constant queries, constant mem_err after 2 epochs); forcing all N
       prototypes to be used keeps the memory a representation of the *diversity* of normal
       patterns, which is what the paper's dynamic memory is meant to balance against sparsity.
    """
    m = l2_normalize(items, dim=1)
    g = m @ m.t()
    n = g.shape[0]
    off = g[~torch.eye(n, dtype=torch.bool, device=g.device)]
    loss = F.relu(off).mean()
    if weights is not None:
        p = weights.mean(dim=(0, 2, 3)).clamp_min(1e-8)                      # [N]
        loss = loss + (math.log(n) + (p * p.log()).sum())
    return loss


def bdfi_losses(model: BDFI, out: dict, target: torch.Tensor, window=None):
    cfg = model.cfg
    l_frame = F.mse_loss(out["frame"], target)                             # L_int (L2)
    l_ssim = 1.0 - ssim(out["frame"], target, window)
    if cfg.flow_mode == "bidirectional":   # eq. 12: each input rebuilt from the other
        l_warp = (out["x_next"] - out["nxt"]).abs().mean() + (out["x_prev"] - out["prev"]).abs().mean()
    else:
        l_warp = (out["w_prev"] - target).abs().mean() + (out["w_next"] - target).abs().mean()
    l_con = out["mem_err"].mean()                                          # ||v_ij - q_ij||
    l_div = diversity_loss(model.interp.memory.items, model.interp.memory.last_weights)
    total = (cfg.w_frame * l_frame + cfg.w_ssim * l_ssim + cfg.w_warp * l_warp
             + cfg.w_con * l_con + cfg.w_div * l_div)
    parts = dict(frame=l_frame, ssim=l_ssim, warp=l_warp, con=l_con, div=l_div)
    if cfg.w_smooth > 0:
        l_sm = smoothness(out["f_prev"]) + smoothness(out["f_next"])
        total = total + cfg.w_smooth * l_sm
        parts["smooth"] = l_sm
    return total, parts


def count_params(model):
    return sum(p.numel() for p in model.parameters())
