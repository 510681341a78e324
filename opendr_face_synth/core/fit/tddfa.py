"""The seed's 3D face fitter: 3DDFA (MobileNet-V1 regressing 62 BFM parameters from a 120x120 crop).

Reads both the seed's 3DDFA v1 checkpoint (``phase1_wpdc_vdc.pth.tar`` + ``param_whitening.pkl``) and the
3DDFA_V2 ones (``mb1_120x120.pth`` / ``mb05_120x120.pth`` + ``param_mean_std_62d_120x120.pkl``). The crop rules,
the two-step refit and the parameter conventions follow seed-spec §3-§5; crops are cut for all faces of an
image at once on the torch device. Coordinates inside this module are the seed's *index* coordinates
(integer = pixel centre) until ``bfm.crop_to_camera`` turns them into ours.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..types import FaceDetection, FaceFit
from . import bfm as bfm_mod
from .base import FitError
from .bfm import CROP_SIZE, N_PARAMS, PIXEL_CENTRE, ModelFilesError, MorphableModel

if TYPE_CHECKING:
    from ..seed_bundle import SeedBundle

# Input normalisation of both 3DDFA versions: (BGR pixel - 127.5) / 128.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 128.0


class CheckpointError(ValueError):
    """A checkpoint does not match the network: the message lists missing, unexpected and mis-shaped keys."""


def state_dict_report(
    expected: dict[str, tuple],
    given: dict[str, tuple],
    what: str,
    optional_suffixes: tuple[str, ...] = ("num_batches_tracked",),
) -> str | None:
    """Compare key -> shape maps; None if they agree, else a readable report (absent optional keys are fine)."""
    missing = sorted(k for k in expected if k not in given and not k.endswith(optional_suffixes))
    unexpected = sorted(k for k in given if k not in expected)
    misshaped = sorted(k for k in expected if k in given and tuple(given[k]) != tuple(expected[k]))
    if not (missing or unexpected or misshaped):
        return None

    def block(title: str, keys: list[str], fmt) -> str:
        if not keys:
            return ""
        shown = "\n".join(f"    {fmt(k)}" for k in keys[:40])
        more = f"\n    ... and {len(keys) - 40} more" if len(keys) > 40 else ""
        return f"\n  {title} ({len(keys)}):\n{shown}{more}"

    return (
        f"{what} does not match the network"
        + block("missing keys", missing, lambda k: f"{k} {tuple(expected[k])}")
        + block("unexpected keys", unexpected, lambda k: f"{k} {tuple(given[k])}")
        + block(
            "mis-shaped keys", misshaped, lambda k: f"{k}: checkpoint {tuple(given[k])}, network {tuple(expected[k])}"
        )
    )


def torch_load_tensors(path: str | Path, trust: bool = False) -> dict:
    """torch.load restricted to tensors and plain containers (no arbitrary pickled code) unless ``trust``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFilesError(f"checkpoint not found: {path}")
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False)  # the caller vouches for the file
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds objects other than tensors, so it was not loaded ({err}). "
            "If you trust this file, load it with trust_checkpoint=True."
        ) from err


# ------------------------------------------------------------------------------------------- network
class DepthWiseBlock(nn.Module):
    """3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU (3DDFA's key names)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(inplanes, inplanes, 3, stride=stride, padding=1, groups=inplanes, bias=False)
        self.bn_dw = nn.BatchNorm2d(inplanes)
        self.conv_sep = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn_sep = nn.BatchNorm2d(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn_dw(self.conv_dw(x)))
        return F.relu(self.bn_sep(self.conv_sep(x)))


# (name, in, out, stride) at widen factor 1; 120 -> 60 (conv1) -> 30 -> 15 -> 8 -> 4.
_MOBILENET_LAYOUT = (
    ("dw2_1", 32, 64, 1),
    ("dw2_2", 64, 128, 2),
    ("dw3_1", 128, 128, 1),
    ("dw3_2", 128, 256, 2),
    ("dw4_1", 256, 256, 1),
    ("dw4_2", 256, 512, 2),
    ("dw5_1", 512, 512, 1),
    ("dw5_2", 512, 512, 1),
    ("dw5_3", 512, 512, 1),
    ("dw5_4", 512, 512, 1),
    ("dw5_5", 512, 512, 1),
    ("dw5_6", 512, 1024, 2),
    ("dw6", 1024, 1024, 1),
)


class MobileNetV1(nn.Module):
    """MobileNet-V1 with 3DDFA's module names (``conv1``, ``bn1``, ``dw2_1`` ... ``dw6``, ``fc``)."""

    def __init__(self, widen_factor: float = 1.0, num_classes: int = N_PARAMS) -> None:
        super().__init__()
        self.widen_factor = widen_factor
        self.conv1 = nn.Conv2d(3, int(32 * widen_factor), 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(int(32 * widen_factor))
        for name, cin, cout, stride in _MOBILENET_LAYOUT:
            self.add_module(name, DepthWiseBlock(int(cin * widen_factor), int(cout * widen_factor), stride))
        self.fc = nn.Linear(int(1024 * widen_factor), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for name, *_ in _MOBILENET_LAYOUT:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def load_regressor(path: str | Path, device: str | torch.device = "cpu", trust_checkpoint: bool = False) -> MobileNetV1:
    """Strictly load a 3DDFA v1 or V2 MobileNet checkpoint; the widen factor comes from the shapes.

    Both formats are a dict with ``state_dict`` whose keys carry DataParallel's ``module.`` prefix. V2 names the
    62-parameter head ``fc_param`` and also stores an unused 136-output ``fc_lm`` head (V2's own loader drops
    it too); v1 names the head ``fc``.
    """
    ckpt = torch_load_tensors(path, trust_checkpoint)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict (or a dict with 'state_dict'), got {type(ckpt).__name__}")
    clean: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("fc_lm."):
            continue
        clean[key.replace("fc_param.", "fc.", 1) if key.startswith("fc_param.") else key] = value
    if "conv1.weight" not in clean:
        raise CheckpointError(
            f"{path}: no conv1.weight; not a 3DDFA MobileNet checkpoint (keys: {list(clean)[:8]} ...)"
        )
    widen = clean["conv1.weight"].shape[0] / 32
    net = MobileNetV1(widen, num_classes=N_PARAMS)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    report = state_dict_report(expected, {k: tuple(v.shape) for k, v in clean.items()}, f"3DDFA checkpoint {path}")
    if report:
        raise CheckpointError(report)
    net.load_state_dict(clean, strict=False)
    return net.to(device).eval()


def load_whitening(path: str | Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(mean, std, convention): v1 ``param_whitening.pkl`` (``param_mean``/``param_std``) or V2's
    ``param_mean_std_62d_120x120.pkl`` (``mean``/``std``). The two sets must not be mixed (seed-spec §3.2)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFilesError(f"parameter whitening file not found: {path}")
    stats = bfm_mod.load_numpy_pickle(path)
    if "param_mean" in stats and "param_std" in stats:
        mean, std, convention = stats["param_mean"], stats["param_std"], "v1"
    elif "mean" in stats and "std" in stats:
        mean, std, convention = stats["mean"], stats["std"], "v2"
    else:
        raise ModelFilesError(f"{path}: expected keys param_mean/param_std (v1) or mean/std (V2), got {sorted(stats)}")
    mean = np.asarray(mean, dtype=np.float32).ravel()
    std = np.asarray(std, dtype=np.float32).ravel()
    if mean.shape != (N_PARAMS,) or std.shape != (N_PARAMS,):
        raise ModelFilesError(
            f"{path}: whitening vectors have shapes {mean.shape}, {std.shape}, expected ({N_PARAMS},)"
        )
    return mean, std, convention


# --------------------------------------------------------------------------------------------- crops
def roi_from_box(boxes: np.ndarray) -> np.ndarray:
    """V2's ROI from detector boxes (B, 4) [x0, y0, x1, y1]: side int(1.58 s), centre moved down 0.14 s."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    old = (b[:, 2] - b[:, 0] + b[:, 3] - b[:, 1]) / 2
    cx = b[:, 2] - (b[:, 2] - b[:, 0]) / 2
    cy = b[:, 3] - (b[:, 3] - b[:, 1]) / 2 + old * 0.14
    side = np.floor(old * 1.58)
    x0, y0 = cx - side / 2, cy - side / 2
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1)


def roi_from_landmarks(points: np.ndarray) -> np.ndarray:
    """ROI from landmarks (B, K, 2): the bounding box made square, then a square of side its diagonal."""
    p = np.asarray(points, dtype=np.float64).reshape(len(points), -1, 2)
    lo, hi = p.min(axis=1), p.max(axis=1)
    centre = (lo + hi) / 2
    side = math.sqrt(2.0) * (hi - lo).max(axis=1)
    start = centre - side[:, None] / 2
    return np.concatenate([start, start + side[:, None]], axis=1)


def crop_rois(image: torch.Tensor, rois: torch.Tensor, size: int = CROP_SIZE) -> torch.Tensor:
    """Cut and resize every ROI of one image at once, as the seed's ``crop_img`` + ``cv2.resize`` do.

    ``image`` (1, C, H, W) float pixel values, ``rois`` (B, 4) [sx, sy, ex, ey] in index coordinates. The ROI is
    rounded, pixels outside the image are 0, and the window is resized bilinearly with OpenCV's sampling
    (half-pixel centres, edge pixels of the window replicated); results are rounded like uint8 output.
    """
    r = torch.round(rois.to(image.dtype))
    sx, sy, ex, ey = r.unbind(-1)
    height, width = image.shape[-2:]
    centres = torch.arange(size, device=image.device, dtype=image.dtype) + 0.5

    def axis(start: torch.Tensor, extent: torch.Tensor, full: int) -> torch.Tensor:
        src = centres[None] * (extent / size)[:, None] - 0.5
        src = torch.minimum(src.clamp(min=0.0), (extent - 1)[:, None]) + start[:, None]
        return (2 * src + 1) / full - 1  # grid_sample's normalised coordinate (align_corners=False)

    gx, gy = axis(sx, ex - sx, width), axis(sy, ey - sy, height)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    out = F.grid_sample(
        image.expand(len(rois), -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out.round().clamp(0, 255)


# ---------------------------------------------------------------------------------------------- fitter
class TDDFAFitter:
    """3DDFA fitter (Fitter protocol). Two-step by default: fit on the detector-box ROI (or on the ROI of
    68 detector keypoints when a detection carries them, as the seed does with FAN points), rebuild 68
    landmarks, fit again on their ROI (seed-spec §3.1 ``--bbox_init two``)."""

    name = "3ddfa"

    def __init__(
        self,
        regressor: str | Path,
        whitening: str | Path,
        model: MorphableModel,
        *,
        device: str | torch.device = "cpu",
        two_step: bool = True,
        convention: str | None = None,
        trust_checkpoint: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.net = load_regressor(regressor, self.device, trust_checkpoint)
        mean, std, detected = load_whitening(whitening)
        self.convention = convention or detected
        self.model = model
        self.two_step = two_step
        self._mean = torch.as_tensor(mean, device=self.device)
        self._std = torch.as_tensor(std, device=self.device)
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32), device=self.device)  # noqa: E731
        self._base = (t(model.u_base), t(model.w_shp_base), t(model.w_exp_base))
        self._dense = (t(model.u), t(model.w_shp), t(model.w_exp)) if model.dense else None
        self._ids5 = model.align_ids5()

    @classmethod
    def from_bundle(cls, bundle: SeedBundle, **kwargs) -> TDDFAFitter:
        """Build from located seed / 3DDFA_V2 files (see core/seed_bundle.py)."""
        return cls(bundle.require("regressor"), bundle.require("whitening"), bundle.face_model(), **kwargs)

    # ---------------------------------------------------------------------------------- low level
    def image_tensor(self, image_rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) RGB uint8 -> (1, 3, H, W) float BGR on the device (3DDFA sees BGR)."""
        bgr = np.ascontiguousarray(np.asarray(image_rgb)[..., ::-1])
        return torch.from_numpy(bgr).to(self.device).permute(2, 0, 1)[None].float()

    @torch.inference_mode()
    def predict(self, image: torch.Tensor, rois: np.ndarray) -> torch.Tensor:
        """De-whitened 62-parameter vectors (B, 62) for ROIs (B, 4) of one image tensor."""
        crops = crop_rois(image, torch.as_tensor(rois, device=self.device, dtype=torch.float32))
        out = self.net((crops - PIXEL_MEAN) / PIXEL_SCALE)
        return out * self._std + self._mean

    def landmarks68(self, params: torch.Tensor, rois: np.ndarray) -> torch.Tensor:
        """68 landmarks (B, 68, 3) in our camera frame."""
        pts = bfm_mod.model_points(params, *self._base)
        return bfm_mod.crop_to_camera(pts, params, self._roi_tensor(rois), self.convention)

    def _roi_tensor(self, rois: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(rois), device=self.device, dtype=torch.float32)

    def _first_rois(self, detections: list[FaceDetection]) -> np.ndarray:
        rois = []
        for det in detections:
            kp = det.keypoints
            if kp is not None and len(kp) == 68:
                rois.append(roi_from_landmarks(np.asarray(kp, dtype=np.float64)[None, :, :2] - PIXEL_CENTRE)[0])
            else:
                rois.append(roi_from_box(np.asarray(det.box, dtype=np.float64) - PIXEL_CENTRE)[0])
        return np.asarray(rois, dtype=np.float64).reshape(-1, 4)

    # ------------------------------------------------------------------------------------- protocol
    def fit(self, image_rgb: np.ndarray, detections: list[FaceDetection]) -> list[FaceFit | FitError]:
        if not detections:
            return []
        return self.fit_rois(image_rgb, self._first_rois(detections), refit=self.two_step)

    @torch.inference_mode()
    def fit_rois(self, image_rgb: np.ndarray, rois: np.ndarray, refit: bool = False) -> list[FaceFit | FitError]:
        """Fit faces given first ROIs (B, 4) in the seed's index coordinates; ``refit`` = the two-step rule."""
        rois = np.asarray(rois, dtype=np.float64).reshape(-1, 4)
        results: list[FaceFit | FitError | None] = [None] * len(rois)
        ok = [i for i, r in enumerate(rois) if np.all(np.isfinite(r)) and min(r[2] - r[0], r[3] - r[1]) >= 2]
        for i in set(range(len(rois))) - set(ok):
            results[i] = FitError(f"3ddfa: degenerate crop box {np.round(rois[i], 1).tolist()}")
        if ok:
            image = self.image_tensor(image_rgb)
            sel = rois[ok]
            params = self.predict(image, sel)
            if refit:
                lm = self.landmarks68(params, sel)[..., :2].cpu().numpy() - PIXEL_CENTRE
                sel = roi_from_landmarks(lm)
                params = self.predict(image, sel)
            for k, fit in enumerate(self._make_fits(params, sel)):
                results[ok[k]] = fit
        return results  # type: ignore[return-value]

    def _make_fits(self, params: torch.Tensor, rois: np.ndarray) -> list[FaceFit | FitError]:
        roi_t = self._roi_tensor(rois)
        lm68 = self.landmarks68(params, rois)
        origin = bfm_mod.crop_to_camera(torch.zeros_like(lm68[:, :1]), params, roi_t, self.convention)[:, 0]
        if self._dense is not None:
            verts = bfm_mod.crop_to_camera(bfm_mod.model_points(params, *self._dense), params, roi_t, self.convention)
        else:
            verts = lm68
        params_np = params.double().cpu().numpy()
        lm_np, verts_np, origin_np = lm68.cpu().numpy(), verts.cpu().numpy(), origin.cpu().numpy()
        fits: list[FaceFit | FitError] = []
        for b in range(len(rois)):
            if not (np.all(np.isfinite(params_np[b])) and np.all(np.isfinite(verts_np[b]))):
                fits.append(FitError("3ddfa: the network gave non-finite parameters"))
                continue
            rot, scale = bfm_mod.rotation_from_params(params_np[b])
            lm = lm_np[b]
            five = np.stack([lm[36:42, :2].mean(0), lm[42:48, :2].mean(0), lm[33, :2], lm[48, :2], lm[54, :2]])
            fits.append(
                FaceFit(
                    vertices=verts_np[b].astype(np.float32),
                    triangles=self.model.triangles,
                    pose=bfm_mod.pose_from_params(params_np[b]),
                    landmarks5=five.astype(np.float32),
                    landmark_ids5=self._ids5,
                    head_centre=origin_np[b].astype(np.float32),
                    mirror_ids=self.model.mirror_ids,
                    landmarks68=lm.astype(np.float32),
                    params={
                        "params62": params_np[b].astype(np.float32),
                        "roi": np.asarray(rois[b], dtype=np.float32),
                        "convention": self.convention,
                        "rotation_seed": rot,
                        "scale": scale,
                        "dense": self._dense is not None,
                    },
                )
            )
        return fits

    def close(self) -> None:
        """Nothing to release (plain torch modules)."""
