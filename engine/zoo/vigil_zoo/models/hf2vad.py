"""HF2-VAD: hybrid object-centric anomaly detection (`hf2vad` recipe).

Liu, Nie, Long, Zhang, Li, "A Hybrid Video Anomaly Detection Framework via Memory-Augmented Flow
Reconstruction and Flow-Guided Frame Prediction", ICCV 2021. See README.md ("HF2-VAD") for what
is taken from the paper, what was chosen here, and why.

Everything works on object cubes: for one foreground box at frame t, the crops of frames t-4..t
and of the four flows between them, resized to 32 x 32 (`vigil dataset export --objects`).

1. ML-MemAE-SC reconstructs the 4 stacked flows (8 channels: (dx, dy) per flow, pixels):
   encoder in_conv (32x32, f) -> down1 (16x16, 2f) -> down2 (8x8, 4f) -> down3 (4x4, 8f); each
   level is two conv3x3-BN-ReLU (the first of a down level has stride 2). Memories (`mem_usage`
   = [False, True, True, True]) sit on the bottleneck and on the two inner skip connections
   (16x16 and 8x8); the outermost level has no skip at all (`skip_ops` = ["none", "concat",
   "concat"]), so everything the decoder sees has gone through a memory. Each memory addresses
   the *whole* feature map of an object (one slot = a C x h x w prototype, as in the paper's
   code): cosine similarity with every slot, softmax (optionally with a temperature), hard
   shrinkage relu(w - lambda) * w / (|w - lambda| + eps), L1 renormalisation, read w M. The
   decoder is ConvTranspose(2x2, stride 2) up-sampling, concatenation with the memory read of the
   skip, two conv3x3-BN-ReLU, and a 1x1 conv to the 8 flow channels (linear, pixels).
2. CVAE ("flow-guided frame prediction") predicts frame t from frames t-4..t-1 (x), conditioned
   on the flows y *reconstructed* by the frozen ML-MemAE-SC:
   * posterior encoder q(z | x, y): a 4-stage conv encoder (32, 16, 8, 4) over concat(x, y);
   * prior encoder p(z | y): the same layout over y;
   * latents at the two coarsest stages (4x4 and 8x8), unit-variance Gaussians described by
     their means only (KL(q || p) = 0.5 ||mu_q - mu_p||^2); training samples z = mu_q + eps, test
     time uses mu_q (no random op in the deployed graph);
   * a bottleneck that turns the prior features and z into the decoder input (the prior means
     are computed there), and a U-Net decoder whose skip connections come from the posterior
     encoder (so the appearance of the past frames reaches the prediction); tanh output.
3. Score (evaluate_hf2vad.py; the Rust recipe computes the same): per object S_r = sum of
   squared flow-reconstruction errors over the cube, S_p = sum of squared errors of the
   predicted frame t; z-scored with the training objects' mean/std; w_r z(S_r) + w_p z(S_p).

The deployed graph (`HF2VAD.forward`: frames [K, 4, 32, 32], flows [K, 8, 32, 32] ->
flow_recon [K, 8, 32, 32], pred [K, 1, 32, 32]) uses Conv, ConvTranspose (BatchNorm folded by
`maam_net.fold_batchnorm`), Relu, Concat, Reshape, Transpose, MatMul, Softmax, Sub, Abs, Mul,
Div, Add, ReduceSum, Sqrt, Tanh; shapes are static.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .maam_net import Memory, fold_batchnorm, conv_bn_relu, l2_normalize  # noqa: F401  (fold_batchnorm re-exported)
from .stm_ae import gradient_loss


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass
class HF2VADConfig:
    cube: int = 32               # crop size of the object cubes (paper: 32)
    clip_hist: int = 4           # past frames t-4..t-1 (paper: 4)
    num_flows: int = 4           # flows t-4->t-3 .. t-1->t (paper: 4)
    img_channels: int = 1        # grey frames (Ped2)
    # ---- ML-MemAE-SC (paper's code: feature_root 32, num_slots 2000, shrink_thres 0.0005)
    feature_root: int = 16
    num_slots: int = 64
    shrink_thres: float = 0.0    # 0 = 1 / num_slots (the paper's 0.0005 is 1 / 2000)
    mem_temperature: float = 0.1  # softmax(cos / T); see README for why not T = 1
    mem_usage: tuple = (False, True, True, True)   # memories on skips 32x32 / 16x16 / 8x8, bottleneck
    skip_ops: tuple = ("none", "concat", "concat")  # skips at 32x32 / 16x16 / 8x8
    w_entropy: float = 0.0002    # weight of the addressing entropy (sum over the memories)
    # ---- CVAE (paper: nf_start 64, nf_max 128)
    nf_start: int = 32
    nf_max: int = 64
    latent_ch: int = 16          # channels of each latent map (4x4 and 8x8)
    w_frame: float = 1.0         # L2 of the predicted frame t
    w_grad: float = 1.0          # gradient-difference loss
    w_kl: float = 1.0            # KL(q || p), mean over latent elements

    def __post_init__(self):
        self.mem_usage = tuple(bool(m) for m in self.mem_usage)
        self.skip_ops = tuple(self.skip_ops)
        if self.shrink_thres == 0.0:
            self.shrink_thres = 1.0 / self.num_slots
        if len(self.mem_usage) != 4 or len(self.skip_ops) != 3:
            raise ValueError("mem_usage needs 4 entries (3 skip levels + bottleneck), skip_ops 3")
        if any(s not in ("none", "concat") for s in self.skip_ops):
            raise ValueError(f"skip_ops must be 'none' or 'concat', got {self.skip_ops}")
        for lvl in range(3):
            if self.mem_usage[lvl] and self.skip_ops[lvl] == "none":
                raise ValueError(f"mem_usage[{lvl}] is set but skip level {lvl} is 'none'")
        if self.cube != 32:
            raise ValueError("the layouts assume 32x32 cubes (stages 32, 16, 8, 4)")

    @property
    def flow_ch(self):
        return 2 * self.num_flows

    @property
    def shrink_lambda(self):
        return self.shrink_thres

    def to_dict(self):
        d = asdict(self)
        d["mem_usage"] = list(d["mem_usage"])
        d["skip_ops"] = list(d["skip_ops"])
        return d

    @staticmethod
    def from_dict(d):
        return HF2VADConfig(**d)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

def double_conv(cin, cout, stride=1):
    """Two conv3x3-BN-ReLU, the first with `stride` (2 = the down-sampling of a level)."""
    return nn.Sequential(conv_bn_relu(cin, cout, stride), conv_bn_relu(cout, cout, 1))


class ObjectMemory(nn.Module):
    """A memory whose slots are whole object feature maps (C x h x w), addressed per object.

    x [B, C, h, w] is flattened to one query q per object (Python-int shapes keep every Reshape
    a constant in the exported graph); with the slots M [N, C*h*w] (a `maam_net.Memory`'s
    parameter, learned by back-propagation):

        w  = softmax_n(cos(q, m_n) / T)
        w' = relu(w - lambda) * w / (|w - lambda| + eps),   w' = w' / (sum_n w'_n + eps)
        read = sum_n w'_n m_n

    The read is computed as sum_n (w'_n |m_n|) m_n/|m_n|, the same sum, so that the exported
    graph (after `freeze`) holds only the unit slots and N norms, not the slots a second time
    next to their normalised copy. Returns the read [B, C, h, w] and the shrunk weights [B, N]."""

    def __init__(self, slots, shape, shrink_lambda, temperature):
        super().__init__()
        self.shape = tuple(shape)                                 # (C, h, w)
        dim = self.shape[0] * self.shape[1] * self.shape[2]
        self.mem = Memory(slots, dim, shrink_lambda, temperature)
        self.frozen = False

    def unit_slots(self):
        """(unit slots [N, D], norms [N, 1]); the frozen copy when `freeze` was called."""
        if self.frozen:
            return self.frozen_unit, self.frozen_norms
        items = self.mem.items
        norms = torch.sqrt((items * items).sum(dim=-1, keepdim=True) + 1e-8)
        return items / norms, norms

    def freeze(self):
        """Export only (on a copy): precompute the unit slots and norms as parameters, so the
        traced graph holds each once as an initializer, instead of the slots plus a partly folded
        normalisation (buffers or plain tensors would be inlined as one constant per use)."""
        with torch.no_grad():
            unit, norms = (t.detach().clone() for t in self.unit_slots())
        self.frozen_unit = nn.Parameter(unit, requires_grad=False)
        self.frozen_norms = nn.Parameter(norms, requires_grad=False)
        self.frozen = True

    def forward(self, x):
        b = int(x.shape[0])
        c, h, w = self.shape
        mem = self.mem
        q = l2_normalize(x.reshape(b, c * h * w), dim=-1)                        # [B, D]
        unit, norms = self.unit_slots()                                         # [N, D], [N, 1]
        # [B, N] cosines; (M q^T)^T rather than q M^T, so the graph needs the unit slots in one
        # orientation only (a constant Transpose would be folded into a second copy)
        sim = torch.matmul(unit, q.t()).t()
        wts = torch.softmax(sim * mem.inv_t if mem.inv_t != 1.0 else sim, dim=-1)
        if mem.shrink_lambda > 0:
            d = wts - mem.shrink_lambda
            wts = F.relu(d) * wts / (torch.abs(d) + mem.eps)
            wts = wts / (wts.sum(dim=-1, keepdim=True) + mem.eps)
        read = torch.matmul(wts * norms.t(), unit)                              # = wts @ items
        return read.reshape(b, c, h, w), wts


class MLMemAESC(nn.Module):
    """Multi-level memory-augmented autoencoder with skip connections, over stacked flows."""

    def __init__(self, cfg: HF2VADConfig):
        super().__init__()
        self.cfg = c = cfg
        f, s = c.feature_root, c.cube
        widths = (f, 2 * f, 4 * f, 8 * f)
        self.inc = double_conv(c.flow_ch, widths[0])
        self.downs = nn.ModuleList([double_conv(widths[i], widths[i + 1], 2) for i in range(3)])
        mems = []
        for lvl in range(4):                  # 0..2 skips (32, 16, 8), 3 bottleneck (4)
            side = s >> lvl
            mems.append(ObjectMemory(c.num_slots, (widths[lvl], side, side), c.shrink_lambda,
                                     c.mem_temperature) if c.mem_usage[lvl] else nn.Identity())
        self.mems = nn.ModuleList(mems)
        # decoder level l (l = 2, 1, 0): up from widths[l+1] to widths[l], concat the skip if any
        self.ups = nn.ModuleList([nn.ConvTranspose2d(widths[l + 1], widths[l], 2, 2) for l in range(3)])
        self.dec = nn.ModuleList([double_conv(widths[l] * (2 if c.skip_ops[l] == "concat" else 1), widths[l])
                                  for l in range(3)])
        self.out = nn.Conv2d(widths[0], c.flow_ch, 1)

    def forward_train(self, flows):
        c = self.cfg
        feats = [self.inc(flows)]
        for d in self.downs:
            feats.append(d(feats[-1]))
        weights = []

        def through_memory(lvl, x):
            if not c.mem_usage[lvl]:
                return x
            r, w = self.mems[lvl](x)
            weights.append(w)
            return r

        h = through_memory(3, feats[3])
        for l in (2, 1, 0):
            h = self.ups[l](h)
            if c.skip_ops[l] == "concat":
                h = torch.cat([h, through_memory(l, feats[l])], dim=1)
            h = self.dec[l](h)
        return self.out(h), weights

    def forward(self, flows):
        return self.forward_train(flows)[0]


class Encoder(nn.Module):
    """Conv encoder with one output per stage: stage 0 at full size (double conv), stages 1..3
    halve the size (double conv, the first conv with stride 2)."""

    def __init__(self, cin, widths):
        super().__init__()
        self.stages = nn.ModuleList([double_conv(cin if i == 0 else widths[i - 1], widths[i], 1 if i == 0 else 2)
                                     for i in range(len(widths))])

    def forward(self, x):
        out = []
        for st in self.stages:
            x = st(x)
            out.append(x)
        return out


class CVAE(nn.Module):
    """Conditional VAE predicting frame t from x = frames t-4..t-1 and y = the flows.

    Stages 0..3 are 32, 16, 8, 4 pixels wide; latents live at stages 3 and 2."""

    def __init__(self, cfg: HF2VADConfig):
        super().__init__()
        self.cfg = c = cfg
        w = [min(c.nf_start * 2 ** i, c.nf_max) for i in range(4)]
        zc = c.latent_ch
        self.widths = w
        self.enc_q = Encoder(c.img_channels * c.clip_hist + c.flow_ch, w)   # posterior, (x, y)
        self.enc_p = Encoder(c.flow_ch, w)                                 # prior, y only
        # posterior / prior means at 4x4 and 8x8 (linear convs)
        self.q4 = nn.Conv2d(w[3], zc, 3, 1, 1)
        self.q8 = nn.Conv2d(w[2], zc, 3, 1, 1)
        self.p4 = nn.Conv2d(w[3], zc, 3, 1, 1)
        self.p8 = nn.Conv2d(w[2], zc, 3, 1, 1)
        # bottleneck: prior features + z -> decoder input at 8x8
        self.b4 = conv_bn_relu(w[3] + zc, w[3], 1)
        self.up4 = nn.ConvTranspose2d(w[3], w[2], 2, 2)
        self.g8 = conv_bn_relu(w[2] + w[2], w[2], 1)          # concat(up(b4), prior 8x8 features)
        self.b8 = conv_bn_relu(w[2] + zc, w[2], 1)
        # decoder with skips from the posterior encoder at 8, 16 and 32
        self.d8 = double_conv(w[2] + w[2], w[2])
        self.up8 = nn.ConvTranspose2d(w[2], w[1], 2, 2)
        self.d16 = double_conv(w[1] + w[1], w[1])
        self.up16 = nn.ConvTranspose2d(w[1], w[0], 2, 2)
        self.d32 = double_conv(w[0] + w[0], w[0])
        self.out = nn.Conv2d(w[0], c.img_channels, 3, 1, 1)

    def forward_train(self, past, flows, gen=None, sample=True):
        """Returns the predicted frame and the posterior / prior means ([4x4, 8x8] each).
        sample=True draws z = mu_q + eps (eps from `gen`); False uses z = mu_q (test time)."""
        fq = self.enc_q(torch.cat([past, flows], dim=1))
        fp = self.enc_p(flows)
        mq4, mq8 = self.q4(fq[3]), self.q8(fq[2])

        def z(m):
            if not sample:
                return m
            return m + torch.randn(m.shape, generator=gen, dtype=m.dtype, device=m.device)

        mp4 = self.p4(fp[3])
        h = self.b4(torch.cat([fp[3], z(mq4)], dim=1))
        g = self.g8(torch.cat([self.up4(h), fp[2]], dim=1))
        mp8 = self.p8(g)
        h = self.b8(torch.cat([g, z(mq8)], dim=1))
        h = self.d8(torch.cat([h, fq[2]], dim=1))
        h = self.d16(torch.cat([self.up8(h), fq[1]], dim=1))
        h = self.d32(torch.cat([self.up16(h), fq[0]], dim=1))
        pred = torch.tanh(self.out(h))
        return pred, (mq4, mq8), (mp4, mp8)

    def forward(self, past, flows):
        return self.forward_train(past, flows, sample=False)[0]


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

class HF2VAD(nn.Module):
    def __init__(self, cfg: HF2VADConfig | None = None):
        super().__init__()
        self.cfg = cfg or HF2VADConfig()
        self.memae = MLMemAESC(self.cfg)
        self.cvae = CVAE(self.cfg)

    def freeze_memae(self):
        """CVAE stage: ML-MemAE-SC fixed (eval-mode BatchNorm, no gradient)."""
        for p in self.memae.parameters():
            p.requires_grad_(False)
        self.memae.eval()

    def train(self, mode=True):
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.memae.parameters()):
            self.memae.eval()          # a frozen ML-MemAE-SC keeps its running statistics
        return self

    def forward(self, frames, flows):
        """Deployment signature: frames [K, 4, 32, 32] (t-4..t-1, [-1, 1]) and flows
        [K, 8, 32, 32] ((dx, dy) of t-4->t-3 .. t-1->t, pixels) -> flow_recon [K, 8, 32, 32]
        (pixels) and pred [K, 1, 32, 32] (frame t, [-1, 1], posterior mean)."""
        recon = self.memae(flows)
        return recon, self.cvae(frames, recon)


# --------------------------------------------------------------------------------------------
# Losses and scores
# --------------------------------------------------------------------------------------------

def entropy(weights):
    """Sum over the memories of the mean (over objects) entropy of the shrunk weights."""
    total = 0.0
    for w in weights:
        total = total + (-w * torch.log(w + 1e-12)).sum(dim=-1).mean()
    return total


def memae_losses(cfg: HF2VADConfig, recon, flows, weights):
    l_rec = F.mse_loss(recon, flows)
    l_ent = entropy(weights) if weights else recon.new_zeros(())
    total = l_rec + cfg.w_entropy * l_ent
    with torch.no_grad():
        active = sum(float((w > 0).float().sum(dim=-1).mean()) for w in weights) / max(1, len(weights))
        used = sum(float(torch.unique(w.argmax(dim=-1)).numel()) for w in weights) / max(1, len(weights))
    return total, dict(recon=l_rec.detach(), entropy=l_ent.detach(), active=torch.tensor(active),
                       used=torch.tensor(used))


def kl_unit(q_means, p_means):
    """KL(q || p) of unit-variance Gaussians, 0.5 (mu_q - mu_p)^2, mean over latent elements."""
    n = sum(q.numel() for q in q_means)
    return sum(0.5 * ((q - p) ** 2).sum() for q, p in zip(q_means, p_means)) / n


def cvae_losses(cfg: HF2VADConfig, pred, target, q_means, p_means):
    l_frame = F.mse_loss(pred, target)
    l_grad = gradient_loss(pred, target)
    l_kl = kl_unit(q_means, p_means)
    total = cfg.w_frame * l_frame + cfg.w_grad * l_grad + cfg.w_kl * l_kl
    return total, dict(frame=l_frame.detach(), grad=l_grad.detach(), kl=l_kl.detach())


def object_errors(recon, flows, pred, target):
    """Per-object S_r (sum of squared flow errors over the cube) and S_p (sum of squared errors
    of the predicted frame), float64 [B] each."""
    sr = ((recon.double() - flows.double()) ** 2).sum(dim=(1, 2, 3))
    sp = ((pred.double() - target.double()) ** 2).sum(dim=(1, 2, 3))
    return sr, sp


def count_params(module):
    return sum(p.numel() for p in module.parameters())


def param_groups(model: HF2VAD):
    """Parameter counts per part, for logs and the README."""
    m = model.memae
    mem = sum(count_params(x) for x in m.mems)
    return {"memae_conv": count_params(m) - mem, "memae_memory": mem,
            "cvae": count_params(model.cvae), "total": count_params(model)}
