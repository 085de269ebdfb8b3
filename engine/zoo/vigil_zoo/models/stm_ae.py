"""STM-AE: spatial-temporal memories augmented two-stream autoencoder (`stm-ae` recipe).

Liu, Liu, Zhao, Yang, Zhu, Song, "Learning Appearance-Motion Normality for Video Anomaly
Detection", IEEE ICME 2022 (arXiv:2207.13361). See README.md ("STM-AE") for what is taken from
the paper, what was chosen here, and why.

Frame t is predicted from the four frames t-4..t-1 and the three optical flows between them:

1. two streams, each an autoencoder pre-trained on its own proxy task and then frozen:
   * appearance AE over single frames, trained as a denoiser (20 % salt-and-pepper noise on the
     input, the clean frame as target);
   * motion AE over single flows (dx, dy in pixels), trained to reconstruct the flow;
   the encoders (3 stages, each conv3x3/2 + conv3x3, BN, ReLU -> features at 1/2, 1/4, 1/8) are
   shared across the frames (resp. flows) of the window; the AE decoders are used only in
   pre-training;
2. spatial features: the four per-frame 1/8 encodings stacked on channels and fused by a
   trainable conv3x3-BN-ReLU + conv1x1 into one query map S; temporal features: the same over the
   three per-flow encodings -> T (queries are linear: cosines span [-1, 1]);
3. a spatial and a temporal memory pool (N = 32 items each, unit vectors): per position, the
   query is compared with every item by cosine similarity, w = softmax(cos / tau), and the read is
   sum_n w_n m_n. Items are *not* learned by back-propagation: during training, after every step,
   each item m is moved towards its top-k (k = 8) most similar queries of the batch,
   m <- L2normalise(m + sum_j softmax_j(cos_j / tau) q_j) (a buffer update, no gradient). The
   top-k is only in this write, never in the forward pass;
4. a decoder predicts frame t (tanh, [-1, 1]) from concat(S, S_read, T, T_read) at 1/8,
   up-sampling with ConvTranspose and (by default) skip connections from the frozen encoders'
   1/4 and 1/2 features of all frames and flows (compressed by conv1x1-BN-ReLU);
5. a small PatchGAN discriminator (least-squares GAN) sees (I_{t-1}, candidate I_t) pairs.

The deployed forward pass (`STMAE.forward`) uses only Conv, ConvTranspose (BatchNorm folded in
by `maam_net.fold_batchnorm`), Relu, Concat, Reshape, Transpose, MatMul, Softmax, Mul, Add,
ReduceSum, Sqrt, Div and Tanh; shapes are static.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .maam_net import fold_batchnorm, up_bn_relu, l2_normalize  # noqa: F401  (fold_batchnorm re-exported)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass
class STMConfig:
    height: int = 128
    width: int = 192
    n_frames: int = 4            # input frames t-4..t-1 (and n_frames-1 flows between them)
    # Stream encoders: channels of the three stages (1/2, 1/4, 1/8), each conv3x3 stride 2 then
    # conv3x3 stride 1 (BN, ReLU). The same layout for the appearance and the motion stream.
    enc_widths: tuple = (16, 32, 64)
    mem_dim: int = 64            # channels of the fused queries S, T and of the memory items
    # Prediction decoder: channels after each 2x up-sampling (1/4, 1/2, full resolution)
    dec_widths: tuple = (64, 32, 16)
    skip_levels: int = 2         # skips from the frozen encoders: 0 none, 1 the 1/4, 2 the 1/4 and 1/2 features
    memory_slots: int = 32       # N per pool
    top_k: int = 8               # queries per item in the memory write (training only)
    mem_temperature: float = 0.1  # tau: w = softmax(cos / tau); 1.0 = plain softmax over cosines
    disc_widths: tuple = (16, 32, 64)
    # proxy tasks
    noise_p: float = 0.2         # salt-and-pepper fraction for the appearance denoiser
    # main-stage loss weights: w_int L_int + w_grad L_grad + w_mot L_mot + w_adv L_adv + w_compact L_compact
    w_int: float = 1.0           # L2 intensity (prediction vs frame t)
    w_grad: float = 1.0          # gradient-difference loss (Mathieu et al. 2016, alpha = 1)
    w_mot: float = 1.0           # motion proxy, see `mot_loss`
    w_adv: float = 0.05          # least-squares adversarial loss of the generator
    w_compact: float = 0.01      # memory compactness, mean ||q - nearest item||^2 over both pools
    # "abs": L1 between |pred - I_{t-1}| and |I_t - I_{t-1}| (default);
    # "signed": L1 between (pred - I_{t-1}) and (I_t - I_{t-1}), which is algebraically the L1
    # intensity loss |pred - I_t| (kept for comparison only, see README)
    mot_loss: str = "abs"

    def __post_init__(self):
        self.enc_widths = tuple(self.enc_widths)
        self.dec_widths = tuple(self.dec_widths)
        self.disc_widths = tuple(self.disc_widths)
        if len(self.enc_widths) != 3 or len(self.dec_widths) != 3:
            raise ValueError("enc_widths and dec_widths need 3 entries (1/2, 1/4, 1/8 resp. 1/4, 1/2, 1/1)")
        if not 0 <= self.skip_levels <= 2:
            raise ValueError(f"skip_levels must be 0, 1 or 2, got {self.skip_levels}")
        if self.n_frames < 2:
            raise ValueError("n_frames must be >= 2 (at least one flow)")
        if self.memory_slots < 1 or self.top_k < 1:
            raise ValueError("memory_slots and top_k must be >= 1")
        if self.mot_loss not in ("abs", "signed"):
            raise ValueError(f"mot_loss must be 'abs' or 'signed', got {self.mot_loss!r}")
        if self.height % 8 or self.width % 8:
            raise ValueError("height and width must be multiples of 8 (three stride-2 stages)")

    @property
    def n_flows(self):
        return self.n_frames - 1

    def to_dict(self):
        d = asdict(self)
        for k in ("enc_widths", "dec_widths", "disc_widths"):
            d[k] = list(d[k])
        return d

    @staticmethod
    def from_dict(d):
        return STMConfig(**d)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

def cbr(cin, cout, k=3, stride=1):
    """Conv(k x k)-BN-ReLU as its own nn.Sequential, the pattern `fold_batchnorm` folds."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class StreamEncoder(nn.Module):
    """x [B, cin, H, W] -> [f_1/2, f_1/4, f_1/8] (post-ReLU features)."""

    def __init__(self, cin, widths):
        super().__init__()
        stages, c = [], cin
        for w in widths:
            stages.append(nn.Sequential(cbr(c, w, 3, 2), cbr(w, w, 3, 1)))
            c = w
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        feats = []
        for s in self.stages:
            x = s(x)
            feats.append(x)
        return feats


class StreamDecoder(nn.Module):
    """Pre-training decoder of a stream AE: 1/8 features -> [B, cout, H, W] (no skips, so the
    whole input has to pass through the bottleneck the main model will read)."""

    def __init__(self, widths, cout, tanh):
        super().__init__()
        w3, w2, w1 = widths[2], widths[1], widths[0]
        self.ups = nn.Sequential(up_bn_relu(w3, w2), up_bn_relu(w2, w1), up_bn_relu(w1, w1))
        self.out = nn.Conv2d(w1, cout, 3, 1, 1)
        self.tanh = tanh

    def forward(self, z):
        y = self.out(self.ups(z))
        return torch.tanh(y) if self.tanh else y


class MemoryPool(nn.Module):
    """N unit-norm items, read by cosine softmax, written by the top-k rule (training only).

    q [B, C, h, w] -> read [B, C, h, w], similarities [B, h, w, N] (slots on the last axis, so
    Softmax and MatMul run over contiguous memory in the exported graph).
    """

    def __init__(self, slots, dim, top_k, temperature):
        super().__init__()
        self.register_buffer("items", torch.zeros(slots, dim))
        self.register_buffer("ready", torch.zeros((), dtype=torch.uint8))
        self.top_k = int(top_k)
        self.inv_t = 1.0 / float(temperature)

    def forward(self, q):
        qn = l2_normalize(q.permute(0, 2, 3, 1), dim=-1)                 # [B, h, w, C]
        sim = torch.matmul(qn, self.items.t())                           # [B, h, w, N] cosines
        w = torch.softmax(sim * self.inv_t if self.inv_t != 1.0 else sim, dim=-1)
        read = torch.matmul(w, self.items).permute(0, 3, 1, 2)          # [B, C, h, w]
        return read, sim, qn

    @torch.no_grad()
    def initialise(self, qn):
        """Farthest-point initialisation from a batch of unit queries [..., C]: the query nearest
        to the mean first, then repeatedly the query least similar to every item chosen so far
        (deterministic, and spreads the items over the normal data from the first step)."""
        qf = qn.reshape(-1, qn.shape[-1]).float()
        n = self.items.shape[0]
        mean = l2_normalize(qf.mean(0, keepdim=True), dim=-1)
        idx = [int(torch.argmax(qf @ mean.t()))]
        best = qf @ qf[idx[0]]
        for _ in range(1, n):
            i = int(torch.argmin(best))
            idx.append(i)
            best = torch.maximum(best, qf @ qf[i])
        self.items.copy_(l2_normalize(qf[idx], dim=-1))
        self.ready.fill_(1)

    @torch.no_grad()
    def write(self, qn):
        """For every item: its top-k most similar queries of the batch (cosine), softmax over
        those k similarities / tau, item <- L2normalise(item + weighted sum of the k queries)."""
        qf = qn.detach().reshape(-1, qn.shape[-1]).float()              # [M, C]
        sim = self.items @ qf.t()                                        # [N, M]
        k = min(self.top_k, qf.shape[0])
        vals, idx = sim.topk(k, dim=1)                                   # [N, k]
        w = torch.softmax(vals * self.inv_t, dim=1)
        upd = (w.unsqueeze(-1) * qf[idx]).sum(dim=1)                     # [N, C]
        self.items.copy_(l2_normalize(self.items + upd, dim=-1))


class PatchDiscriminator(nn.Module):
    """Least-squares PatchGAN over (I_{t-1}, I_t or prediction): 4x4/2 convs + LeakyReLU(0.2),
    a 3x3 conv to one logit per 1/8-resolution patch. Training only (never exported)."""

    def __init__(self, widths, cin=2):
        super().__init__()
        layers, c = [], cin
        for w in widths:
            layers += [nn.Conv2d(c, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c = w
        layers.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, prev, x):
        return self.net(torch.cat([prev, x], dim=1))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

class STMAE(nn.Module):
    def __init__(self, cfg: STMConfig | None = None):
        super().__init__()
        self.cfg = c = cfg or STMConfig()
        e1, e2, e3 = c.enc_widths
        d1, d2, d3 = c.dec_widths
        nf, nm = c.n_frames, c.n_flows
        # streams (pre-trained, then frozen)
        self.app_enc = StreamEncoder(1, c.enc_widths)
        self.app_dec = StreamDecoder(c.enc_widths, 1, tanh=True)
        self.mot_enc = StreamEncoder(2, c.enc_widths)
        self.mot_dec = StreamDecoder(c.enc_widths, 2, tanh=False)
        # spatial / temporal fusion -> memory queries (linear 1x1 at the end)
        self.spatial_fuse = nn.Sequential(cbr(nf * e3, c.mem_dim), nn.Conv2d(c.mem_dim, c.mem_dim, 1))
        self.temporal_fuse = nn.Sequential(cbr(nm * e3, c.mem_dim), nn.Conv2d(c.mem_dim, c.mem_dim, 1))
        self.spatial_mem = MemoryPool(c.memory_slots, c.mem_dim, c.top_k, c.mem_temperature)
        self.temporal_mem = MemoryPool(c.memory_slots, c.mem_dim, c.top_k, c.mem_temperature)
        # prediction decoder
        self.head = cbr(4 * c.mem_dim, d1)
        self.up1 = up_bn_relu(d1, d1)                                   # 1/8 -> 1/4
        if c.skip_levels >= 1:
            self.skip1 = cbr((nf + nm) * e2, d1 // 2, k=1)
            self.merge1 = cbr(d1 + d1 // 2, d1)
        else:
            self.merge1 = cbr(d1, d1)
        self.up2 = up_bn_relu(d1, d2)                                   # 1/4 -> 1/2
        if c.skip_levels >= 2:
            self.skip2 = cbr((nf + nm) * e1, d2 // 2, k=1)
            self.merge2 = cbr(d2 + d2 // 2, d2)
        else:
            self.merge2 = cbr(d2, d2)
        self.up3 = up_bn_relu(d2, d3)                                   # 1/2 -> 1/1
        self.out = nn.Conv2d(d3, 1, 3, 1, 1)
        self.disc = PatchDiscriminator(c.disc_widths)

    # -- groups of parameters ----------------------------------------------------------------

    def stream_modules(self):
        return [self.app_enc, self.app_dec, self.mot_enc, self.mot_dec]

    def generator_parameters(self):
        """Everything trained in the main stage except the discriminator (the frozen stream
        encoders are excluded, the memories are buffers)."""
        skip = set(id(p) for m in self.stream_modules() + [self.disc] for p in m.parameters())
        return [p for p in self.parameters() if id(p) not in skip]

    def freeze_streams(self):
        for m in self.stream_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
        self._streams_frozen = True

    def train(self, mode=True):
        super().train(mode)
        if getattr(self, "_streams_frozen", False):
            for m in self.stream_modules():
                m.eval()      # frozen encoders keep their BatchNorm statistics
        return self

    # -- forward -------------------------------------------------------------------------------

    def encode(self, frames, flows):
        """frames [B, n_frames, H, W] (oldest first), flows [B, 2*n_flows, H, W] ((dx, dy) per
        flow, oldest first) -> per level a [B, (n_frames + n_flows) * C_l, h_l, w_l] stack of
        (frame features..., flow features...) and the 1/8 stacks for the two fusions."""
        nf, nm = self.cfg.n_frames, self.cfg.n_flows
        # python ints, so that a traced export has constant Reshape shapes
        h, w = int(frames.shape[-2]), int(frames.shape[-1])
        fa = self.app_enc(frames.reshape(-1, 1, h, w))                 # [B*nf, C, ...] frame-major
        fm = self.mot_enc(flows.reshape(-1, 2, h, w))
        stack = lambda f, n: f.reshape(-1, n * int(f.shape[1]), int(f.shape[2]), int(f.shape[3]))
        app = [stack(f, nf) for f in fa]
        mot = [stack(f, nm) for f in fm]
        return app, mot

    def decode(self, app, mot):
        c = self.cfg
        S = self.spatial_fuse(app[2])
        T = self.temporal_fuse(mot[2])
        if self.training:
            for mem, q in ((self.spatial_mem, S), (self.temporal_mem, T)):
                if not bool(mem.ready):
                    mem.initialise(l2_normalize(q.detach().permute(0, 2, 3, 1), dim=-1))
        S_read, s_sim, s_q = self.spatial_mem(S)
        T_read, t_sim, t_q = self.temporal_mem(T)
        x = self.head(torch.cat([S, S_read, T, T_read], dim=1))
        x = self.up1(x)
        if c.skip_levels >= 1:
            x = torch.cat([x, self.skip1(torch.cat([app[1], mot[1]], dim=1))], dim=1)
        x = self.merge1(x)
        x = self.up2(x)
        if c.skip_levels >= 2:
            x = torch.cat([x, self.skip2(torch.cat([app[0], mot[0]], dim=1))], dim=1)
        x = self.merge2(x)
        pred = torch.tanh(self.out(self.up3(x)))
        return pred, dict(s_sim=s_sim, t_sim=t_sim, s_q=s_q, t_q=t_q)

    def forward_train(self, frames, flows):
        if getattr(self, "_streams_frozen", False):
            with torch.no_grad():
                app, mot = self.encode(frames, flows)
        else:
            app, mot = self.encode(frames, flows)
        pred, aux = self.decode(app, mot)
        return dict(pred=pred, **aux)

    def forward(self, frames, flows):
        """Deployment signature: frames [1, 4, H, W] (t-4..t-1, [-1, 1]) and flows [1, 6, H, W]
        (dx, dy of t-4->t-3, t-3->t-2, t-2->t-1, pixels) -> predicted frame t [1, 1, H, W]."""
        app, mot = self.encode(frames, flows)
        return self.decode(app, mot)[0]

    @torch.no_grad()
    def write_memories(self, out):
        self.spatial_mem.write(out["s_q"])
        self.temporal_mem.write(out["t_q"])

    # -- stream AEs (pre-training) -----------------------------------------------------------

    def app_autoencode(self, frame):
        return self.app_dec(self.app_enc(frame)[2])

    def mot_autoencode(self, flow):
        return self.mot_dec(self.mot_enc(flow)[2])


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------

def salt_and_pepper(x, p, gen: torch.Generator):
    """Replaces a fraction p of the pixels by -1 (pepper) or +1 (salt), half each."""
    u = torch.rand(x.shape, generator=gen)
    out = x.clone()
    out[u < p / 2] = -1.0
    out[(u >= p / 2) & (u < p)] = 1.0
    return out


def gradient_loss(pred, target):
    """Gradient-difference loss (alpha = 1): mean | |d pred| - |d target| | along x and y."""
    dx = lambda t: (t[..., :, 1:] - t[..., :, :-1]).abs()
    dy = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs()
    return (dx(pred) - dx(target)).abs().mean() + (dy(pred) - dy(target)).abs().mean()


def motion_loss(pred, target, last, mode="abs"):
    """Differentiable stand-in for the paper's flow loss (Farneback is not differentiable).
    abs: mean | |pred - I_{t-1}| - |I_t - I_{t-1}| |, i.e. the predicted frame must change where,
    and as much as, the real frame changes (sign-free, so it is not the intensity loss again);
    signed: mean |(pred - I_{t-1}) - (I_t - I_{t-1})| = mean |pred - I_t| exactly."""
    if mode == "signed":
        return ((pred - last) - (target - last)).abs().mean()
    return ((pred - last).abs() - (target - last).abs()).abs().mean()


def compactness(sim):
    """Mean squared distance between each unit query and its nearest unit item, 2 - 2 max cos."""
    return (2.0 - 2.0 * sim.max(dim=-1).values).mean()


def lsgan_d(d_real, d_fake):
    return 0.5 * (((d_real - 1) ** 2).mean() + (d_fake ** 2).mean())


def lsgan_g(d_fake):
    return 0.5 * ((d_fake - 1) ** 2).mean()


def generator_losses(model: STMAE, out, target, last):
    """total = w_int L_int + w_grad L_grad + w_mot L_mot + w_adv L_adv + w_compact L_compact;
    returns total and the parts (+ diagnostics that are not in the total)."""
    c = model.cfg
    pred = out["pred"]
    l_int = F.mse_loss(pred, target)
    l_grad = gradient_loss(pred, target)
    l_mot = motion_loss(pred, target, last, c.mot_loss)
    l_adv = lsgan_g(model.disc(last, pred)) if c.w_adv > 0 else pred.new_zeros(())
    l_cmp = compactness(out["s_sim"]) + compactness(out["t_sim"])
    total = c.w_int * l_int + c.w_grad * l_grad + c.w_mot * l_mot + c.w_adv * l_adv + c.w_compact * l_cmp
    with torch.no_grad():
        mse01 = ((pred - target) ** 2).mean(dim=(1, 2, 3)) / 4.0        # on [0, 1] images
        psnr = (10 * torch.log10(1.0 / mse01.clamp_min(1e-10))).mean()
        used = lambda s: float(torch.unique(s.argmax(dim=-1)).numel())
    parts = dict(int=l_int, grad=l_grad, mot=l_mot, adv=l_adv, compact=l_cmp, psnr=psnr,
                 s_used=torch.tensor(used(out["s_sim"])), t_used=torch.tensor(used(out["t_sim"])))
    return total, parts


def discriminator_loss(model: STMAE, pred, target, last):
    return lsgan_d(model.disc(last, target), model.disc(last, pred.detach()))


def count_params(module):
    return sum(p.numel() for p in module.parameters())


def param_groups(model: STMAE):
    """Parameter counts per part, for logs and the README."""
    g = {
        "app_enc": count_params(model.app_enc), "app_dec": count_params(model.app_dec),
        "mot_enc": count_params(model.mot_enc), "mot_dec": count_params(model.mot_dec),
        "fusion": count_params(model.spatial_fuse) + count_params(model.temporal_fuse),
        "memory": model.spatial_mem.items.numel() + model.temporal_mem.items.numel(),
        "pred_dec": sum(p.numel() for p in model.generator_parameters())
        - count_params(model.spatial_fuse) - count_params(model.temporal_fuse),
        "disc": count_params(model.disc),
    }
    g["deployed"] = g["app_enc"] + g["mot_enc"] + g["fusion"] + g["memory"] + g["pred_dec"]
    g["total"] = sum(v for k, v in g.items() if k != "deployed")
    return g
