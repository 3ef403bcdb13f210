"""A small class-conditional U-Net: the network behind eps_theta(x_t, t, y) (or an x_0 or v prediction).

Architecture (Ho et al. 2020, Appendix B, scaled down): a stack of ResNet blocks with GroupNorm and
SiLU at each resolution, strided-convolution downsampling, nearest-neighbour upsampling, skip
connections from every block on the way down to the way up, and self-attention at chosen resolutions.
Options used by the design study of notebook 09 (defaults reproduce the shipped model): BatchNorm in place
of GroupNorm (``norm``), the convolution kernel size of the ResNet blocks (``kernel_size``), the kind of
attention (``attention_type``: self-attention or CBAM, Woo et al. 2018) and whether the bottleneck has one
(``mid_attention``), and the width of the embedding network (``emb_mult``).
The timestep enters every ResNet block through an embedding, and so does the class label:
label ``num_classes`` is the extra "null" label used for classifier-free guidance
(Ho & Salimans 2022), so one network gives both eps(x_t, t, y) and eps(x_t, t, null).
Several labels (``extra_labels``, notebook 10: a digit and its position) each get their own embedding
table with their own null value, and their embeddings are added: any label can be left out on its own.

``UNetConfig`` fully describes the network; checkpoints store it as JSON and rebuild with
``UNet(UNetConfig(**d))``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .schedules import make_betas

NORMS = ("group", "batch")
ATTENTION_TYPES = ("self", "cbam")


@dataclass
class UNetConfig:
    image_channels: int = 1
    image_size: int = 28
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)  # one entry per resolution: 28 -> 14 -> 7
    num_res_blocks: int = 1  # ResNet blocks per resolution (the way up has one more)
    attention_resolutions: tuple[int, ...] = (7,)  # feature-map sizes that get self-attention
    attention_type: str = "self"  # "self" (multi-head self-attention) or "cbam" (channel + spatial, Woo et al. 2018)
    mid_attention: bool = True  # attention between the two bottleneck ResNet blocks
    num_heads: int = 4
    dropout: float = 0.1
    norm: str = "group"  # "group" (GroupNorm, Wu & He 2018) or "batch" (BatchNorm; see notebook 09)
    kernel_size: int = 3  # kernel of the ResNet blocks' convolutions (odd)
    emb_mult: int = 4  # width of the time/label embedding network: emb_mult * base_channels
    scale_shift: bool = False  # embedding sets GroupNorm scale and shift (AdaGN) instead of adding a bias
    groups: int = 8  # GroupNorm groups
    num_classes: int = 10  # labels 0..num_classes-1; label num_classes is the null label
    # sizes of further categorical labels, each with its own null value (its size): (4,) adds a position
    # label 0..3 (notebook 10); labels are then (B, 1 + len(extra_labels)): (class, position, ...)
    extra_labels: tuple[int, ...] = ()
    time_embedding: str = "sinusoidal"  # or "scalar": the features (t/T, beta_t, alpha_bar_t)
    num_timesteps: int = 1000  # T, used by the scalar features
    schedule: str = "linear"  # used by the scalar features
    extra: dict = field(default_factory=dict)  # free-form notes; ignored by the network

    def __post_init__(self):
        self.channel_mults = tuple(self.channel_mults)
        self.attention_resolutions = tuple(self.attention_resolutions)
        self.extra_labels = tuple(self.extra_labels)
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.extra_labels):
            raise ValueError(f"extra_labels must be a list of label counts >= 1, got {list(self.extra_labels)}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type must be one of {ATTENTION_TYPES}, got {self.attention_type!r}")
        if isinstance(self.kernel_size, bool) or not isinstance(self.kernel_size, int) or self.kernel_size < 1:
            raise ValueError(f"kernel_size must be an odd integer >= 1, got {self.kernel_size!r}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (so that padding keeps the size), got {self.kernel_size}")
        if isinstance(self.emb_mult, bool) or not isinstance(self.emb_mult, int) or self.emb_mult < 1:
            raise ValueError(f"emb_mult must be an integer >= 1, got {self.emb_mult!r}")
        if self.time_embedding not in ("sinusoidal", "scalar"):
            raise ValueError(f"time_embedding must be 'sinusoidal' or 'scalar', got {self.time_embedding!r}")
        if self.image_size % 2 ** (len(self.channel_mults) - 1):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2^{len(self.channel_mults) - 1} "
                f"for {len(self.channel_mults)} resolutions"
            )
        for m in self.channel_mults:
            if (self.base_channels * m) % self.groups:
                raise ValueError(f"channels {self.base_channels * m} are not divisible by groups={self.groups}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        d["attention_resolutions"] = list(self.attention_resolutions)
        d["extra_labels"] = list(self.extra_labels)
        return d


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer position encoding of the timestep (Vaswani et al. 2017, Sec. 3.5), (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def make_norm(kind: str, groups: int, channels: int) -> nn.Module:
    """GroupNorm (statistics per example, so the same at training and sampling time) or BatchNorm
    (statistics over the batch while training, running averages when sampling; see notebook 09)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, add the (time + label) embedding, GroupNorm -> SiLU -> dropout -> conv, + skip.

    With ``scale_shift`` the embedding instead modulates the second GroupNorm,
    ``norm2(h) * (1 + scale) + shift`` ("AdaGN", Nichol & Dhariwal 2021, Sec. 3 and Dhariwal & Nichol 2021,
    Sec. 3): the label and timestep can then rescale features, not only shift them.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        groups: int,
        dropout: float,
        scale_shift: bool = False,
        norm: str = "group",
        kernel_size: int = 3,
    ):
        super().__init__()
        self.scale_shift = scale_shift
        pad = kernel_size // 2
        self.norm1 = make_norm(norm, groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size, padding=pad)
        self.emb = nn.Linear(emb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2 = make_norm(norm, groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size, padding=pad)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stabler early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb(F.silu(emb))[:, :, None, None]  # (B, C or 2C, 1, 1) broadcast over H, W
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, with a residual connection."""

    def __init__(self, ch: int, groups: int, num_heads: int, norm: str = "group"):
        super().__init__()
        self.num_heads = num_heads
        self.norm = make_norm(norm, groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.num_heads, C // self.num_heads, H * W)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # each (B, heads, HW, C/heads)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        h = h.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.out(h)


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018, "CBAM", Sec. 3, Eqs. 1-3).

    Channel attention, then spatial attention, each a multiplicative gate in (0, 1):
        M_c(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))              (Eq. 2), F' = M_c(F) * F
        M_s(F') = sigmoid(conv_7x7([mean_c(F'); max_c(F')]))             (Eq. 3), F'' = M_s(F') * F'
    The MLP is shared by both pooled descriptors and has a hidden layer of C / reduction units.
    (B, C, H, W) -> (B, C, H, W). Self-attention lets every position look at every other one;
    CBAM only re-weights channels and positions, at a fraction of the cost.
    """

    def __init__(self, ch: int, reduction: int = 4, spatial_kernel: int = 7):
        super().__init__()
        hidden = max(1, ch // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(ch, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, ch, 1))
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """M_c, (B, C, 1, 1)."""
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """M_s, (B, 1, H, W)."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return torch.sigmoid(self.spatial(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel_gate(x) * x
        return self.spatial_gate(x) * x


class CBAMBlock(nn.Module):
    """CBAM as a residual block of the U-Net, shaped like ``Attention``: x + proj(CBAM(norm(x))), with the
    projection initialised to zero so that the block starts as the identity."""

    def __init__(self, ch: int, groups: int, norm: str = "group"):
        super().__init__()
        self.norm = make_norm(norm, groups, ch)
        self.cbam = CBAM(ch)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.cbam(self.norm(x)))


class UNet(nn.Module):
    """eps_theta(x_t, t, y): input (B, C, H, W), tensor-index timesteps (B,), labels (B,) -> (B, C, H, W)."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or UNetConfig()
        ch = cfg.base_channels
        emb_dim = cfg.emb_mult * ch
        if cfg.time_embedding == "scalar":
            # the features (t/T, beta_t, alpha_bar_t) of the paper step t; stored, not trained
            betas = make_betas(cfg.schedule, cfg.num_timesteps)
            feats = torch.stack(
                [torch.arange(1, cfg.num_timesteps + 1) / cfg.num_timesteps, betas, torch.cumprod(1 - betas, 0)], 1
            )
            self.register_buffer("time_features", feats.float(), persistent=False)
            time_in = 3
        else:
            time_in = ch
        self.time_mlp = nn.Sequential(nn.Linear(time_in, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(cfg.num_classes + 1, emb_dim)  # index num_classes = null label
        self.null_label = cfg.num_classes
        # one table per further label (index n = its null value); absent unless configured, so that
        # checkpoints of single-label models load unchanged
        self.extra_label_embs = nn.ModuleList(nn.Embedding(n + 1, emb_dim) for n in cfg.extra_labels)

        self.conv_in = nn.Conv2d(cfg.image_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skip_chs = [ch]
        res = cfg.image_size
        for level, mult in enumerate(cfg.channel_mults):
            out = cfg.base_channels * mult
            for _ in range(cfg.num_res_blocks):
                self.down.append(self._block(ch, out, emb_dim, res))
                ch = out
                skip_chs.append(ch)
            if level < len(cfg.channel_mults) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))  # H -> H/2
                skip_chs.append(ch)
                res //= 2
        self.mid = nn.ModuleList(
            [
                self._resblock(ch, ch, emb_dim),
                self._attention(ch) if cfg.mid_attention else nn.Identity(),
                self._resblock(ch, ch, emb_dim),
            ]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            out = cfg.base_channels * mult
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(self._block(ch + skip_chs.pop(), out, emb_dim, res))
                ch = out
            if level > 0:
                self.up.append(
                    nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1))
                )
                res *= 2
        self.norm_out = make_norm(cfg.norm, cfg.groups, ch)
        self.conv_out = nn.Conv2d(ch, cfg.image_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _resblock(self, in_ch: int, out_ch: int, emb_dim: int) -> ResBlock:
        cfg = self.config
        return ResBlock(in_ch, out_ch, emb_dim, cfg.groups, cfg.dropout, cfg.scale_shift, cfg.norm, cfg.kernel_size)

    def _attention(self, ch: int) -> nn.Module:
        cfg = self.config
        if cfg.attention_type == "cbam":
            return CBAMBlock(ch, cfg.groups, cfg.norm)
        return Attention(ch, cfg.groups, cfg.num_heads, cfg.norm)

    def _block(self, in_ch: int, out_ch: int, emb_dim: int, res: int) -> nn.Module:
        block = self._resblock(in_ch, out_ch, emb_dim)
        if res in self.config.attention_resolutions:
            return nn.ModuleList([block, self._attention(out_ch)])
        return nn.ModuleList([block])

    @property
    def null_labels(self) -> tuple[int, ...]:
        """The null value of every label: (num_classes, *extra_labels)."""
        return (self.config.num_classes, *self.config.extra_labels)

    def embed(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Time embedding plus label embedding(s), (B,) x (B,) or (B, 1 + len(extra_labels)) -> (B, emb_dim)."""
        if self.config.time_embedding == "scalar":
            temb = self.time_features[t]
        else:
            temb = sinusoidal_embedding(t, self.config.base_channels)
        emb = self.time_mlp(temb)
        k = len(self.extra_label_embs)
        if k == 0:
            return emb + self.label_emb(torch.full_like(t, self.null_label) if y is None else y)
        if y is None:
            y = torch.tensor(self.null_labels, device=t.device).expand(len(t), -1)
        if y.ndim != 2 or y.shape[1] != 1 + k:
            raise ValueError(f"this model takes {1 + k} labels per image, (B, {1 + k}); got shape {tuple(y.shape)}")
        emb = emb + self.label_emb(y[:, 0])
        for i, table in enumerate(self.extra_label_embs):
            emb = emb + table(y[:, i + 1])
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.embed(t, y)
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = self._run(layer, h, emb)
            skips.append(h)
        h = self.mid[0](h, emb)
        h = self.mid[1](h)
        h = self.mid[2](h, emb)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = torch.cat([h, skips.pop()], dim=1)  # skip connection: (B, C + C_skip, H, W)
            h = self._run(layer, h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))

    @staticmethod
    def _run(layer: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if isinstance(layer, nn.ModuleList):  # ResBlock, optionally followed by attention
            h = layer[0](h, emb)
            for extra in layer[1:]:
                h = extra(h)
            return h
        return layer(h)  # down- or upsampling


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
