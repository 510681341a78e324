"""The Rotate-and-Render generator (``RotateSPADEGenerator``, seed-spec §8) and the refiner built on it.

Two modules:

* ``RotateSPADEGenerator``: the original module tree (same attribute names, torch's spectral norm, BatchNorm
  for SyncBatchNorm, each resnet conv registered under both of its names), so its ``state_dict()`` has exactly
  the keys and shapes of ``latest_net_G.pth``. It is the reference for loading and for the eval semantics.
* ``FastRotateGenerator``: the same function for inference with everything foldable folded at load time:
  spectral norm (W = W_orig / (u^T W_mat v), transposed convs with their first two axes swapped, §8.5), each
  BatchNorm into the conv before it, SPADE's parameter-free BatchNorm into the resnet conv before it, and the
  "1 +" of SPADE's scale into the gamma conv's bias. The 18 SPADE ``mlp_shared`` convs, which all read the
  same down-sampled label map, run as one conv. On CUDA it runs in fp16 and channels_last by default.

``load_generator`` reads a checkpoint strictly (a report names every missing, unexpected and mis-shaped key;
absent ``num_batches_tracked`` entries are fine) and returns the fast module. ``RotateAndRenderRefiner`` is
the Refiner (core/refine/base.py): landmark maps + nose/chin mask + generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from ..fit.bfm import ModelFilesError
from ..fit.tddfa import CheckpointError, state_dict_report
from . import landmark_maps as lmaps
from .base import RefineInput

if TYPE_CHECKING:
    from ..seed_bundle import SeedBundle

SPADE_HIDDEN = 128  # SPADE's hidden width, fixed in the seed whatever ngf is
BN_EPS = 1e-5
GENERATOR_SIZE = 256  # the checkpoint was trained on 256 x 256 renders


# --------------------------------------------------------------------------------- reference modules
def _conv_bn(conv: nn.Module, channels: int) -> nn.Sequential:
    """The seed's 'spectralsyncbatch' wrapper: spectral-normed conv (bias dropped) then BatchNorm."""
    return nn.Sequential(spectral_norm(conv), nn.BatchNorm2d(channels, eps=BN_EPS))


class SPADE(nn.Module):
    """BN_noaffine(x) * (1 + gamma(a)) + beta(a), a = ReLU(conv(nearest-resized label map))."""

    def __init__(self, norm_nc: int, label_nc: int) -> None:
        super().__init__()
        self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False, eps=BN_EPS)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, SPADE_HIDDEN, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(SPADE_HIDDEN, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(SPADE_HIDDEN, norm_nc, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        actv = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class ResnetSPADEBlock(nn.Module):
    """x + LReLU(SPADE(conv_1(pad(LReLU(SPADE(conv_0(pad(x)))))))), reflection padding, 3x3 SN convs.

    ``conv_block1`` / ``conv_block4`` are the same modules as ``conv_0`` / ``conv_1`` (the seed registers them
    twice, so the checkpoint stores each tensor twice)."""

    def __init__(self, dim: int, label_nc: int) -> None:
        super().__init__()
        self.conv_0 = nn.Conv2d(dim, dim, 3)
        self.conv_1 = nn.Conv2d(dim, dim, 3)
        self.padding = nn.ReflectionPad2d(1)
        self.add_module("conv_block1", spectral_norm(self.conv_0))
        self.add_module("conv_block4", spectral_norm(self.conv_1))
        self.norm_0 = SPADE(dim, label_nc)
        self.norm_1 = SPADE(dim, label_nc)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        dx = F.leaky_relu(self.norm_0(self.conv_0(self.padding(x)), seg), 0.2)
        dx = F.leaky_relu(self.norm_1(self.conv_1(self.padding(dx)), seg), 0.2)
        return x + dx


class RotateSPADEGenerator(nn.Module):
    """The seed generator's module tree (ngf 64, 4 down-samplings, 9 SPADE resnet blocks, label_nc 5)."""

    def __init__(
        self, ngf: int = 64, label_nc: int = 5, n_downsample: int = 4, n_blocks: int = 9, output_nc: int = 3
    ) -> None:
        super().__init__()
        self.n_blocks = n_blocks
        self.first_layer = nn.Sequential(
            nn.ReflectionPad2d(3), _conv_bn(nn.Conv2d(3, ngf, 7, bias=False), ngf), nn.ReLU()
        )
        down: list[nn.Module] = []
        mult = 1
        for _ in range(n_downsample):
            c = ngf * mult
            down += [_conv_bn(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False), 2 * c), nn.ReLU()]
            mult *= 2
        self.downsample_layers = nn.Sequential(*down)
        up: list[nn.Module] = []
        for _ in range(n_downsample):
            c = ngf * mult
            up += [
                _conv_bn(nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=False), c // 2),
                nn.ReLU(),
            ]
            mult //= 2
        self.upsample_layers = nn.Sequential(*up)
        self.final_layer = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh())
        for i in range(n_blocks):  # registered last, as in the seed (it deletes and re-adds them)
            self.add_module(f"resnet_layers{i}", ResnetSPADEBlock(ngf * 2**n_downsample, label_nc))

    def forward(self, render: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        net = self.downsample_layers(self.first_layer(render))
        for i in range(self.n_blocks):
            net = getattr(self, f"resnet_layers{i}")(net, seg)
        return self.final_layer(self.upsample_layers(net))

    def load_checkpoint(self, source: str | Path | Mapping[str, torch.Tensor]) -> RotateSPADEGenerator:
        """Strict load (report on mismatch; absent ``num_batches_tracked`` allowed) into this module."""
        state = read_checkpoint(source)
        check_checkpoint(state, expected_shapes(self))
        self.load_state_dict(state, strict=False)
        return self


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def generator_key_shapes(
    ngf: int = 64, label_nc: int = 5, n_downsample: int = 4, n_blocks: int = 9
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the seed generator's state dict, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return expected_shapes(RotateSPADEGenerator(ngf, label_nc, n_downsample, n_blocks))


# ------------------------------------------------------------------------------------------ loading
def read_checkpoint(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A plain state dict from a path or a mapping (tensors only; a DataParallel ``module.`` prefix dropped)."""
    if isinstance(source, Mapping):
        state = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelFilesError(f"Rotate-and-Render generator checkpoint not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
            state = dict(state["state_dict"])
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state)


def check_checkpoint(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]) -> None:
    """Raise CheckpointError naming every missing / unexpected / mis-shaped key, or aliases that differ."""
    report = state_dict_report(
        dict(expected), {k: tuple(v.shape) for k, v in state.items()}, "Rotate-and-Render generator checkpoint"
    )
    if report:
        raise CheckpointError(report)
    differing = [
        f"{k} != {k.replace(alias, name)}"
        for alias, name in ((".conv_block1.", ".conv_0."), (".conv_block4.", ".conv_1."))
        for k in state
        if alias in k and not torch.equal(state[k], state[k.replace(alias, name)])
    ]
    if differing:
        raise CheckpointError(
            "generator checkpoint: aliased tensors differ (the seed stores each twice):\n  "
            + "\n  ".join(differing[:20])
        )


def _sn_weight(state: Mapping[str, torch.Tensor], prefix: str, transposed: bool = False) -> torch.Tensor:
    """Eval-mode spectral norm with the stored u, v: W_orig / (u^T W_mat v), in float64."""
    w = state[prefix + "weight_orig"].double()
    u, v = state[prefix + "weight_u"].double(), state[prefix + "weight_v"].double()
    mat = (w.transpose(0, 1) if transposed else w).reshape(u.shape[0], -1)
    return w / torch.dot(u, mat @ v)


def _bn_scale_shift(
    state: Mapping[str, torch.Tensor], prefix: str, affine: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval BatchNorm as y = x * scale + shift."""
    inv = 1.0 / torch.sqrt(state[prefix + "running_var"].double() + BN_EPS)
    mean = state[prefix + "running_mean"].double()
    if affine:
        gamma, beta = state[prefix + "weight"].double(), state[prefix + "bias"].double()
        return gamma * inv, beta - mean * gamma * inv
    return inv, -mean * inv


def fold_state_dict(
    state: Mapping[str, torch.Tensor], n_downsample: int = 4, n_blocks: int = 9
) -> dict[str, torch.Tensor]:
    """The seed checkpoint as plain float32 weights of ``FastRotateGenerator`` (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}

    def conv_bn(dst: str, src: str, transposed: bool = False) -> None:
        w = _sn_weight(state, src + ".0.", transposed)
        scale, shift = _bn_scale_shift(state, src + ".1.")
        out[dst + ".weight"] = w * (scale.view(1, -1, 1, 1) if transposed else scale.view(-1, 1, 1, 1))
        out[dst + ".bias"] = shift

    conv_bn("first", "first_layer.1")
    for i in range(n_downsample):
        conv_bn(f"down.{i}", f"downsample_layers.{2 * i}")
        conv_bn(f"up.{i}", f"upsample_layers.{2 * i}", transposed=True)
    shared_w, shared_b = [], []
    for i in range(n_blocks):
        for j in range(2):
            k, block = 2 * i + j, f"resnet_layers{i}"
            scale, shift = _bn_scale_shift(state, f"{block}.norm_{j}.param_free_norm.", affine=False)
            w = _sn_weight(state, f"{block}.conv_{j}.")
            out[f"res.{k}.weight"] = w * scale.view(-1, 1, 1, 1)
            out[f"res.{k}.bias"] = state[f"{block}.conv_{j}.bias"].double() * scale + shift
            norm = f"{block}.norm_{j}."
            shared_w.append(state[norm + "mlp_shared.0.weight"])
            shared_b.append(state[norm + "mlp_shared.0.bias"])
            out[f"affine.{k}.weight"] = torch.cat([state[norm + "mlp_gamma.weight"], state[norm + "mlp_beta.weight"]])
            out[f"affine.{k}.bias"] = torch.cat([state[norm + "mlp_gamma.bias"] + 1, state[norm + "mlp_beta.bias"]])
    out["spade_shared.weight"] = torch.cat(shared_w)
    out["spade_shared.bias"] = torch.cat(shared_b)
    out["final.weight"] = state["final_layer.1.weight"]
    out["final.bias"] = state["final_layer.1.bias"]
    return {k: v.float().contiguous() for k, v in out.items()}


# ------------------------------------------------------------------------------------------ fast module
class FastRotateGenerator(nn.Module):
    """Inference form of RotateSPADEGenerator with folded weights: render (B, 3, H, W) in [-1, 1] and label
    maps (B, label_nc, H, W) -> image (B, 3, H, W) in [-1, 1]; H, W multiples of 2**n_downsample."""

    def __init__(
        self, ngf: int = 64, label_nc: int = 5, n_downsample: int = 4, n_blocks: int = 9, output_nc: int = 3
    ) -> None:
        super().__init__()
        self.n_blocks = n_blocks
        self.label_nc = label_nc
        dim = ngf * 2**n_downsample
        self.dim = dim
        self.first = nn.Conv2d(3, ngf, 7)
        self.down = nn.ModuleList(nn.Conv2d(ngf * 2**i, ngf * 2 ** (i + 1), 3, 2, 1) for i in range(n_downsample))
        self.spade_shared = nn.Conv2d(label_nc, 2 * n_blocks * SPADE_HIDDEN, 3, padding=1)
        self.affine = nn.ModuleList(nn.Conv2d(SPADE_HIDDEN, 2 * dim, 3, padding=1) for _ in range(2 * n_blocks))
        self.res = nn.ModuleList(nn.Conv2d(dim, dim, 3) for _ in range(2 * n_blocks))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(dim // 2**i, dim // 2 ** (i + 1), 3, 2, 1, output_padding=1) for i in range(n_downsample)
        )
        self.final = nn.Conv2d(ngf, output_nc, 7)
        self.channels_last = False  # set by load_generator; inputs are given in this memory format

    def forward(self, render: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.first(F.pad(render, (3, 3, 3, 3), mode="reflect")))
        for conv in self.down:
            x = F.relu(conv(x))
        hidden = F.relu(self.spade_shared(F.interpolate(seg.to(x.dtype), size=x.shape[2:], mode="nearest")))
        for i in range(self.n_blocks):
            h = x
            for j in range(2):
                k = 2 * i + j
                scale, shift = self.affine[k](hidden[:, k * SPADE_HIDDEN : (k + 1) * SPADE_HIDDEN]).split(self.dim, 1)
                h = F.leaky_relu(self.res[k](F.pad(h, (1, 1, 1, 1), mode="reflect")) * scale + shift, 0.2)
            x = x + h
        for conv in self.up:
            x = F.relu(conv(x))
        return torch.tanh(self.final(F.pad(x, (3, 3, 3, 3), mode="reflect")))


def load_generator(
    source: str | Path | Mapping[str, torch.Tensor],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    channels_last: bool | None = None,
    ngf: int | None = None,
    label_nc: int | None = None,
    n_downsample: int = 4,
    n_blocks: int = 9,
) -> FastRotateGenerator:
    """Strictly load a seed generator checkpoint and return the folded inference module on ``device``.

    ``ngf`` / ``label_nc`` default to what the first layer / first SPADE of the checkpoint say (the seed's are
    64 / 5); everything else must then match exactly. ``dtype`` defaults to float16 on CUDA and float32
    elsewhere; ``channels_last`` defaults to True on CUDA.
    """
    state = read_checkpoint(source)
    first, spade = state.get("first_layer.1.0.weight_orig"), state.get("resnet_layers0.norm_0.mlp_shared.0.weight")
    ngf = ngf or (int(first.shape[0]) if first is not None and first.dim() == 4 else 64)
    label_nc = label_nc or (int(spade.shape[1]) if spade is not None and spade.dim() == 4 else 5)
    check_checkpoint(state, generator_key_shapes(ngf, label_nc, n_downsample, n_blocks))
    folded = fold_state_dict(state, n_downsample, n_blocks)
    with torch.device("meta"):
        fast = FastRotateGenerator(ngf, label_nc, n_downsample, n_blocks)
    fast.load_state_dict(folded, strict=True, assign=True)
    device = torch.device(device)
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    fast = fast.to(device=device, dtype=dtype).eval().requires_grad_(False)
    fast.channels_last = channels_last if channels_last is not None else device.type == "cuda"
    if fast.channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast


# --------------------------------------------------------------------------------------------- refiner
class RotateAndRenderRefiner:
    """The seed's generator as a Refiner: needs the fitter's 68 landmarks (the 3ddfa fitter gives them).

    Per view: the 5-channel landmark maps of the rotated landmarks (sigma, binarised as in the seed), the
    nose/chin mask on the render when the source face is turned by at least 0.255 rad, the generator, and
    [-1, 1] -> [0, 1]. Renders of another size are resampled to 256 and back. The seed-style flat render
    (``flat_images``) is used when the synthesizer provides it, as the generator was trained on those.
    """

    name = "rotate_and_render"
    wants_flat_render = True

    def __init__(
        self,
        checkpoint: str | Path | Mapping[str, torch.Tensor],
        *,
        device: str | torch.device = "cpu",
        sigma: float = lmaps.DEFAULT_SIGMA,
        binarize: bool = True,
        label_mask: bool = True,
        yaw_threshold_rad: float = lmaps.YAW_MASK_THRESHOLD_RAD,
        dtype: torch.dtype | None = None,
        size: int = GENERATOR_SIZE,
    ) -> None:
        self.device = torch.device(device)
        self.generator = load_generator(checkpoint, device=self.device, dtype=dtype)
        if self.generator.label_nc != len(lmaps.CHANNELS):
            raise CheckpointError(
                f"generator expects {self.generator.label_nc} label channels; this refiner "
                f"builds {len(lmaps.CHANNELS)} (the seed's eye/eye/nose/mouth/chin maps)"
            )
        self.sigma, self.binarize, self.label_mask = sigma, binarize, label_mask
        self.yaw_threshold_rad = yaw_threshold_rad
        self.size = size

    @classmethod
    def from_bundle(cls, bundle: SeedBundle, **kwargs) -> RotateAndRenderRefiner:
        return cls(bundle.require("generator"), **kwargs)

    @torch.inference_mode()
    def refine(self, batch: RefineInput) -> torch.Tensor:
        if batch.landmarks68 is None:
            raise ValueError(
                "the rotate_and_render refiner needs 68 landmarks of each rotated face, and this fitter gives "
                "none; use the 3ddfa fitter (FaceFit.landmarks68) with this refiner"
            )
        images = batch.flat_images if batch.flat_images is not None else batch.images
        out_size = images.shape[-2:]
        render = images.to(self.device, torch.float32)
        landmarks = batch.landmarks68.to(self.device, torch.float32)[..., :2]
        if tuple(out_size) != (self.size, self.size):
            render = F.interpolate(
                render, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
            landmarks = landmarks * torch.tensor([self.size / out_size[1], self.size / out_size[0]], device=self.device)
        render = render * 2 - 1
        heat = lmaps.curve_heatmaps(landmarks, self.size, self.sigma, device=self.device)
        seg = lmaps.combine_curves(heat, self.binarize)
        if self.label_mask:
            render = lmaps.apply_label_mask(render, heat, batch.source_yaw_deg.to(self.device), self.yaw_threshold_rad)
        dtype = self.generator.first.weight.dtype
        fmt = torch.channels_last if self.generator.channels_last else torch.contiguous_format
        out = self.generator(
            render.to(dtype).contiguous(memory_format=fmt), seg.to(dtype).contiguous(memory_format=fmt)
        ).float()
        out = ((out + 1) / 2).clamp(0, 1)
        if tuple(out_size) != (self.size, self.size):
            out = F.interpolate(out, size=tuple(out_size), mode="bilinear", align_corners=False, antialias=True).clamp(
                0, 1
            )
        return out.contiguous().to(batch.images.device)
