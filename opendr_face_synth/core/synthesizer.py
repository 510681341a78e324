"""FaceSynthesizer: images in, every face x every requested view out, in one batched device pass.

API (stable; the CLI and the ROS node use only this)::

    synth = FaceSynthesizer(SynthConfig(yaws=(-30, 0, 30), device="auto"))
    results: list[ImageResult] = synth.process([rgb_uint8_hxwx3, ...])
    synth.device            # torch.device actually used
    synth.view_requests     # list[ViewRequest], the views each face gets
    synth.close()

Stages: detect (mediapipe) -> fit (3D face per detection) -> scene (face mesh + head proxy + background,
per face, small CPU work) -> one batched device pass over all faces x views: rotate, align on the seed's
five-point template, rasterize, sample the source photo per pixel with a source-visibility test and
mirror fill, anti-alias, inpaint the unknown -> optional refiner.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import render
from .config import ConfigError, SynthConfig
from .fit.base import FitError, Fitter
from .pose import (
    axis_angle_batch,
    five_point_template,
    pose_from_rotation_camera_batch,
    rotation_camera_batch,
)
from .refine.base import RefineInput, Refiner
from .render.neural_renderer_backend import rasterizer_for, resolve_backend
from .scene import LAYER_BACKGROUND, LAYER_FACE, LAYER_HEAD, FaceScene, build_scene
from .types import FaceDetection, FaceFit, FaceResult, HeadPose, ImageResult, View, ViewRequest

FLAG_FACE, FLAG_HEAD, FLAG_BACKGROUND, FLAG_MIRROR, FLAG_INPAINTED = 1, 2, 4, 8, 16
MAX_IMAGE_PIXELS = 120_000_000  # beyond this an input is refused with a reason (no silent downscale)
FACING_RATIO = 0.5  # a texel is unreliable when its source cosine is below this times its target cosine
MIN_MIRROR_FACING = 0.4  # mirror texels must be clearly seen: silhouette texels hold hair or background
MIRROR_ADVANTAGE = 0.2  # ... and clearly better seen than the point itself (a frontal face gains nothing)
STRETCH_LIMIT = 1.5  # a depth-jump triangle grown beyond this area ratio shows what the source never saw


def resolve_device(name: str) -> torch.device:
    """'auto' picks the first CUDA device when there is one; an unavailable CUDA request is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def target_pose(source: HeadPose, request: ViewRequest) -> HeadPose:
    """Absolute target (seed semantics): requested angles replace the source's, roll is kept."""
    angles = target_angles(np.array([[source.yaw, source.pitch, source.roll]]), [request])[0]
    return HeadPose(*(float(a) for a in angles))


def target_angles(sources: np.ndarray, requests: Sequence[ViewRequest]) -> np.ndarray:
    """:func:`target_pose` for (J, 3) source [yaw, pitch, roll] rows x requests -> (J * len(requests), 3),
    job-major."""
    target = np.repeat(np.asarray(sources, dtype=np.float64), len(requests), axis=0)
    yaw = np.tile([np.nan if r.yaw is None else float(r.yaw) for r in requests], len(sources))
    pitch = np.tile([np.nan if r.pitch is None else float(r.pitch) for r in requests], len(sources))
    target[:, 0] = np.where(np.isnan(yaw), target[:, 0], yaw)
    target[:, 1] = np.where(np.isnan(pitch), target[:, 1], pitch)
    return target


@dataclass
class _Job:
    image_index: int
    face_index: int
    fit: FaceFit
    scene: FaceScene


class FaceSynthesizer:
    def __init__(
        self,
        config: SynthConfig,
        *,
        detector=None,
        fitter: Fitter | None = None,
        refiner: Refiner | None = None,
        person_segmenter: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.config = config.validate()
        self.device = resolve_device(config.device)
        try:
            self.render_backend = resolve_backend(config.render_backend, self.device)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._rasterize = rasterizer_for(self.render_backend)  # render.rasterize or its NR twin
        self.view_requests: list[ViewRequest] = config.view_requests()
        self.output_size = config.output_size
        self.texture_size = 2 * config.output_size
        if detector is None:
            from .detect import FaceDetector

            detector = FaceDetector(config.detection_confidence, config.min_face_size, config.max_faces)
        self._detector = detector
        self._fitter = fitter if fitter is not None else _make_fitter(config, self.device)
        self._refiner = refiner if refiner is not None else _make_refiner(config, self.device)
        self._segmenter = person_segmenter
        if self._segmenter is None and config.background == "scene":
            self._segmenter = PersonSegmenter()
        # CPU: passes of about one face x 8 views stay in cache (measured 1.6x faster than 11-face passes).
        default_pixels = 64_000_000 if self.device.type == "cuda" else 1_000_000
        self.max_pixels_per_pass = int(config.extra.get("max_pixels_per_pass", default_pixels))
        self.supersampling = config.supersampling
        # Per-stage device timings (ms, summed over passes) when set to a dict; synchronises the device,
        # so it is for benchmarks only.
        self.stage_times_ms: dict[str, float] | None = None

    # ------------------------------------------------------------------ public
    def process(self, images: Sequence[np.ndarray]) -> list[ImageResult]:
        """Every face of every image x every requested view; one ImageResult per image, in order."""
        results: list[ImageResult] = []
        jobs: list[_Job] = []
        for index, image in enumerate(images):
            result, image_jobs = self.prepare(image, index)
            results.append(result)
            jobs += image_jobs
        t0 = time.perf_counter()
        views = self.render_jobs(jobs)
        render_ms = (time.perf_counter() - t0) * 1e3
        for job, job_views in zip(jobs, views, strict=True):
            results[job.image_index].faces[job.face_index].views = job_views
        for index in {job.image_index for job in jobs}:
            share = sum(1 for j in jobs if j.image_index == index) / len(jobs)
            results[index].timings_ms["render"] = render_ms * share
        return results

    def prepare(self, image: np.ndarray, index: int = 0) -> tuple[ImageResult, list[_Job]]:
        """The per-image CPU part: check, detect, fit, build each face's scene (no views yet)."""
        t0 = time.perf_counter()
        problem = _check_image(image)
        if problem:
            return ImageResult(faces=[], image_size=_shape2(image), error=problem), []
        image = np.ascontiguousarray(image)
        detections = self._detector.detect(image)
        t1 = time.perf_counter()
        result = ImageResult(faces=[], image_size=image.shape[:2])
        result.timings_ms["detect"] = (t1 - t0) * 1e3
        if not detections:
            result.error = "no face found"
            return result, []
        fits = self._fitter.fit(image, detections)
        t2 = time.perf_counter()
        result.timings_ms["fit"] = (t2 - t1) * 1e3
        jobs: list[_Job] = []
        for face_index, (det, fit) in enumerate(zip(detections, fits, strict=True)):
            if isinstance(fit, FitError):
                result.faces.append(FaceResult(detection=det, fit=None, views=[], error=str(fit)))
                continue
            scene = build_scene(
                image, fit, self.output_size, self._person_mask, self.texture_size, self._source_depth,
                with_head=self.config.background == "scene",
            )
            result.faces.append(FaceResult(detection=det, fit=fit, views=[]))
            jobs.append(_Job(index, face_index, fit, scene))
        result.timings_ms["scene"] = (time.perf_counter() - t2) * 1e3
        return result, jobs

    def close(self) -> None:
        for part in (self._detector, self._fitter, self._segmenter):
            close = getattr(part, "close", None)
            if close is not None:
                close()

    # --------------------------------------------------------------- internals
    def _person_mask(self, rgb: np.ndarray) -> np.ndarray:
        return self._segmenter(rgb) if self._segmenter is not None else np.zeros(rgb.shape[:2], np.float32)

    def _source_depth(self, vertices: np.ndarray, triangles: np.ndarray, size: int) -> np.ndarray:
        """Depth of the nearest face surface per texture pixel, seen from the source camera."""
        v = torch.from_numpy(vertices).to(self.device)[None]
        t = torch.from_numpy(triangles).to(self.device)
        frags = self._rasterize(v, t, size, size)
        return frags.depth[0].cpu().numpy()

    def render_jobs(self, jobs: list[_Job]) -> list[list[View]]:
        """Render every view of every job; batches of jobs with the same mesh topology share passes."""
        if not jobs:
            return []
        n_views = len(self.view_requests)
        pass_pixels = (self.output_size * self.supersampling) ** 2 * n_views
        per_pass = max(1, self.max_pixels_per_pass // pass_pixels)
        out: list[list[View] | None] = [None] * len(jobs)
        groups: dict[tuple, list[int]] = {}
        for i, job in enumerate(jobs):
            key = (job.scene.vertices.shape[0], job.scene.triangles.shape[0], job.scene.texture.shape)
            groups.setdefault(key, []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), per_pass):
                chunk = indices[start:start + per_pass]
                for i, views in zip(chunk, self._render_chunk([jobs[i] for i in chunk]), strict=True):
                    out[i] = views
        return [v for v in out if v is not None]

    def _seed_flat_render(self, jobs: list[_Job], verts: torch.Tensor, textures: torch.Tensor,
                          tex_affine: torch.Tensor, frags, job_of: torch.Tensor, ss: int) -> torch.Tensor:
        """The seed's generator input: the face mesh in flat per-triangle colours taken from the aligned
        source crop at the source pose (seed-spec §6.2, §6.5), drawn at each view's pose on black.
        ``textures`` (J, 3, T, T) in [0, 1] and ``tex_affine`` (J, 2, 3) are the pass's, already on the device."""
        from .refine.seed_render import seed_flat_colors

        dev, size = self.device, self.output_size
        n_face_v = jobs[0].scene.num_face_vertices
        n_face_t = jobs[0].scene.num_face_triangles
        face_tris = torch.from_numpy(jobs[0].scene.triangles[:n_face_t]).to(dev)
        template = torch.from_numpy(five_point_template(size)).float().to(dev)
        ids5 = torch.from_numpy(np.asarray(jobs[0].fit.landmark_ids5)).to(dev)
        src = verts[:, :n_face_v]
        a0, b0 = _similarity_complex(src[:, ids5, :2].mean(dim=2), template)
        aligned = torch.cat([_apply_complex(src[..., :2], a0, b0), (src[..., 2] * a0.abs()[:, None])[..., None]], -1)
        # The aligned source crop, sampled from each face's texture.
        ys, xs = torch.meshgrid(torch.arange(size, device=dev) + 0.5, torch.arange(size, device=dev) + 0.5,
                                indexing="ij")
        pix = torch.complex(xs, ys)[None]
        src_xy = (pix - b0[:, None, None]) / a0[:, None, None]
        src_xy = torch.stack([src_xy.real, src_xy.imag], dim=-1).float()
        crop = _sample_per_job(textures, _to_texture(src_xy, tex_affine), len(jobs), mode="bilinear")
        colours = seed_flat_colors(aligned, face_tris, crop.permute(0, 3, 1, 2), rasterize=self._rasterize)
        tri_id = frags.triangle_id
        on_face = (tri_id >= 0) & (tri_id < n_face_t)
        flat = colours[job_of[:, None, None], tri_id.clamp(0, n_face_t - 1)] * on_face[..., None]
        return render.downsample(flat, ss).permute(0, 3, 1, 2).clamp(0.0, 1.0)

    def _mark(self, stage: str, since: float) -> float:
        if self.stage_times_ms is None:
            return since
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.stage_times_ms[stage] = self.stage_times_ms.get(stage, 0.0) + (now - since) * 1e3
        return now

    @torch.no_grad()
    def _render_chunk(self, jobs: list[_Job]) -> list[list[View]]:
        dev = self.device
        tick = time.perf_counter()
        size = self.output_size
        ss = self.supersampling
        n_jobs, n_views = len(jobs), len(self.view_requests)
        batch = n_jobs * n_views
        scenes = [j.scene for j in jobs]
        triangles = torch.from_numpy(scenes[0].triangles).to(dev)
        verts = _to_device([s.vertices for s in scenes], dev)  # (J, V, 3)
        weights = _to_device([s.weights for s in scenes], dev)
        mirror = _to_device([s.mirror_ids for s in scenes], dev)
        tri_layer = _to_device([s.triangle_layer for s in scenes], dev)
        tri_unknown = _to_device([s.triangle_unknown for s in scenes], dev)
        tri_mirror_ok = _to_device([s.triangle_mirror_ok for s in scenes], dev)
        textures = _to_device([s.texture for s in scenes], dev)
        textures = textures.permute(0, 3, 1, 2).float().div_(255.0)  # (J, 3, T, T)
        src_depth = _to_device([s.source_depth for s in scenes], dev)[:, None]
        src_depth = torch.nan_to_num(src_depth, posinf=1e9)
        tex_affine = torch.from_numpy(np.stack([s.texture_from_source for s in scenes])).float().to(dev)
        image_hw = torch.tensor([s.image_size for s in scenes], dtype=torch.float32, device=dev)
        face_width = torch.tensor([s.face_width for s in scenes], dtype=torch.float32, device=dev)

        tick = self._mark("upload", tick)
        # Per (job, view): rotation about the head centre, as an axis-angle scaled by vertex weights.
        sources = np.array([[j.fit.pose.yaw, j.fit.pose.pitch, j.fit.pose.roll] for j in jobs])
        target = target_angles(sources, self.view_requests)
        source = np.repeat(sources, n_views, axis=0)
        target_rot = rotation_camera_batch(target)
        axis_angles = axis_angle_batch(target_rot @ rotation_camera_batch(source).transpose(0, 2, 1))
        centres = np.repeat(np.stack([job.fit.head_centre for job in jobs]), n_views, 0)
        aa = torch.from_numpy(axis_angles).float().to(dev)
        centre = torch.from_numpy(centres).float().to(dev)
        job_of = torch.arange(n_jobs, device=dev).repeat_interleave(n_views)
        rotated = _rotate_weighted(verts[job_of], weights[job_of], aa, centre)

        # Align each rotated face on the five-point template: 2D similarity as a complex factor.
        ids5 = torch.from_numpy(np.asarray(jobs[0].fit.landmark_ids5)).to(dev)
        template = torch.from_numpy(five_point_template(size)).float().to(dev)
        pts5 = rotated[:, ids5, :2].mean(dim=2)  # (B, 5, 2)
        a, b = _similarity_complex(pts5, template)
        out_xy = _apply_complex(rotated[..., :2], a, b)
        out_z = rotated[..., 2] * a.abs()[:, None]
        screen = torch.cat([out_xy * ss, (out_z * ss)[..., None]], dim=-1)

        tick = self._mark("transform", tick)
        frags = self._rasterize(screen, triangles, size * ss, size * ss)
        tick = self._mark("rasterize", tick)
        tri_id = frags.triangle_id
        covered = tri_id >= 0
        safe_id = tri_id.clamp_min(0)
        flat_idx = job_of[:, None, None] * triangles.shape[0] + safe_id
        layer = tri_layer.reshape(-1).index_select(0, flat_idx.reshape(-1)).view_as(flat_idx).masked_fill_(~covered, 0)
        # A depth-jump triangle is a disocclusion only where the rotation stretched it open.
        stretched = _stretched_triangles(verts[job_of], out_xy, triangles, a.abs(), STRETCH_LIMIT)
        opened = tri_unknown[job_of] & stretched  # (B, F)
        view_idx = torch.arange(batch, device=dev)[:, None, None] * triangles.shape[0] + safe_id
        curtain = covered & opened.reshape(-1).index_select(0, view_idx.reshape(-1)).view_as(view_idx)

        # Where each output pixel came from in the source photo, in texture pixels.
        uv = _to_texture(render.interpolate(verts[..., :2][job_of], frags, triangles), tex_affine[job_of])
        hidden = torch.zeros_like(covered)
        use_mirror = torch.zeros_like(covered)
        face_pix = torch.nonzero((layer == LAYER_FACE).reshape(-1)).squeeze(1)
        if face_pix.numel():
            # Face pixels only (a fraction of the frame): is that texel the nearest surface in the source,
            # and not much more oblique there than in the target (texels near a turned face's silhouette
            # are stretched, or hold background colours)? If not, is its mirror-symmetric texel?
            n_pix = size * ss * size * ss
            pix_view = face_pix // n_pix
            corner = triangles.index_select(0, tri_id.reshape(-1).index_select(0, face_pix))  # (N, 3)
            # Barycentrics are planar (3, B, H, W) storage: gather each plane without packing the frame.
            w = frags.barycentrics.permute(3, 0, 1, 2).reshape(3, -1).index_select(1, face_pix)  # (3, N)
            job = job_of.index_select(0, pix_view)
            # One packed per-vertex table [x, y, z, nx, ny, nz], gathered with flat indices: on CPU,
            # index_select is several times faster than multi-dimensional advanced indexing.
            normals = _to_device([s.source_normals for s in scenes], dev)
            table = torch.cat([verts, normals], dim=-1).reshape(-1, 6)
            base = (job * verts.shape[1])[:, None]
            flat_corner = (base + corner).reshape(-1)
            mirror_corner = mirror.reshape(-1).index_select(0, flat_corner).view(-1, 3)
            here = _blend_corners(table.index_select(0, flat_corner), w)  # (N, 6) at the pixel
            there = _blend_corners(table.index_select(0, (base + mirror_corner).reshape(-1)), w)
            src_z, src_facing = here[:, 2], -here[:, 5]
            m_xyz, m_facing = there[:, :3], -there[:, 5]
            rot_z = _rodrigues(aa)[:, 2, :]  # third row: depth component of a rotated normal
            tgt_facing = -(here[:, 3:] * rot_z.index_select(0, pix_view)).sum(-1)
            uv_face = uv.reshape(-1, 2).index_select(0, face_pix)
            aff = tex_affine.index_select(0, job)
            uv_m = torch.einsum("nij,nj->ni", aff[:, :, :2], m_xyz[:, :2]) + aff[:, :, 2]
            zbuf = _sample_points(src_depth, uv_face, job)
            zbuf_m = _sample_points(src_depth, uv_m, job)
            eps = 0.04 * face_width.index_select(0, job)
            visible = (src_z <= zbuf + eps) & (src_facing >= FACING_RATIO * tgt_facing)
            mirror_visible = (
                tri_mirror_ok.reshape(-1).index_select(0, flat_idx.reshape(-1).index_select(0, face_pix))
                & (m_xyz[:, 2] <= zbuf_m + eps)
                & (m_facing >= torch.clamp(FACING_RATIO * tgt_facing, min=MIN_MIRROR_FACING))
                & (m_facing >= src_facing + MIRROR_ADVANTAGE)
            )
            mirror_here = ~visible & mirror_visible
            use_mirror.view(-1).index_copy_(0, face_pix, mirror_here)
            hidden.view(-1).index_copy_(0, face_pix, ~visible & ~mirror_visible)
            uv.view(-1, 2).index_copy_(0, face_pix, torch.where(mirror_here[:, None], uv_m, uv_face))
        uv_final = uv
        tex_scale = tex_affine[job_of][:, 0, 0]
        src_xy = (uv_final - tex_affine[job_of][:, None, None, :, 2]) / tex_scale[:, None, None, None]
        hw = image_hw[job_of]
        in_image = (
            (src_xy[..., 0] >= 0) & (src_xy[..., 1] >= 0)
            & (src_xy[..., 0] <= hw[:, None, None, 1]) & (src_xy[..., 1] <= hw[:, None, None, 0])
        )
        known = covered & ~curtain & ~hidden & in_image
        tick = self._mark("interpolate+visibility", tick)
        colour = _sample_per_job(textures, uv_final, n_jobs, mode="bilinear")  # (B, H, W, 3)
        tick = self._mark("texture", tick)

        known_f = known.float()
        cov_f = covered.float()
        col_sum = render.downsample(colour * known_f[..., None], ss)
        k = render.downsample(known_f[..., None], ss)
        cov = render.downsample(cov_f[..., None], ss)
        # Unknown pixels take a smooth fill from everything known around them (push-pull pyramid).
        fill = _push_pull_fill(col_sum, k)
        if self.config.background == "scene":
            image = col_sum + fill * (1.0 - k)
            alpha = torch.ones_like(k)
        else:
            image = col_sum + fill * (cov - k).clamp_min(0.0)
            alpha = cov
        image = image.clamp(0.0, 1.0)
        tick = self._mark("antialias+composite", tick)

        if self._refiner is not None:
            source_yaw = torch.tensor([job.fit.pose.yaw for job in jobs], device=dev)[job_of]
            landmarks68 = None
            if all(job.fit.landmarks68 is not None for job in jobs):
                lm = torch.from_numpy(np.stack([job.fit.landmarks68 for job in jobs])).float().to(dev)
                lm = _rotate_weighted(lm[job_of], torch.ones(lm.shape[:2], device=dev)[job_of], aa, centre)
                landmarks68 = _apply_complex(lm[..., :2], a, b)
            flat = None
            if getattr(self._refiner, "wants_flat_render", False):
                flat = self._seed_flat_render(jobs, verts, textures, tex_affine, frags, job_of, ss)
            refined = self._refiner.refine(
                RefineInput(images=image.permute(0, 3, 1, 2), alpha=alpha.permute(0, 3, 1, 2),
                            landmarks68=landmarks68, source_yaw_deg=source_yaw, flat_images=flat)
            )
            image = refined.permute(0, 2, 3, 1).clamp(0.0, 1.0)
            tick = self._mark("refine", tick)

        flags = torch.zeros(covered.shape, dtype=torch.uint8, device=dev)
        flags |= (layer == LAYER_FACE).to(torch.uint8) * FLAG_FACE
        flags |= (layer == LAYER_HEAD).to(torch.uint8) * FLAG_HEAD
        flags |= (layer == LAYER_BACKGROUND).to(torch.uint8) * FLAG_BACKGROUND
        flags |= (use_mirror & known).to(torch.uint8) * FLAG_MIRROR
        filled = ~known if self.config.background == "scene" else covered & ~known
        flags |= filled.to(torch.uint8) * FLAG_INPAINTED
        flags = _or_pool(flags, ss)

        image_u8 = _to_host((image * 255.0 + 0.5).to(torch.uint8))
        mask_u8 = _to_host((k[..., 0] * 255.0 + 0.5).to(torch.uint8))
        flags_host = _to_host(flags)
        angle = _to_host(torch.angle(a))
        if dev.type == "cuda":
            torch.cuda.current_stream(dev).synchronize()
        image_np, mask_np, flags_np = image_u8.numpy(), mask_u8.numpy(), flags_host.numpy()
        tick = self._mark("download", tick)

        # Achieved pose: the target rotation seen after the in-plane turn of the five-point alignment.
        achieved = pose_from_rotation_camera_batch(_rot_z_batch(angle.numpy().astype(np.float64)) @ target_rot)
        results: list[list[View]] = []
        for j in range(n_jobs):
            views = []
            for v, request in enumerate(self.view_requests):
                i = j * n_views + v
                views.append(View(request=request, target=HeadPose(*(float(x) for x in target[i])),
                                  image=image_np[i], mask=mask_np[i], flags=flags_np[i],
                                  achieved=HeadPose(*(float(x) for x in achieved[i]))))
            results.append(views)
        return results


# ---------------------------------------------------------------------- helpers
class PersonSegmenter:
    """mediapipe selfie segmentation (model shipped in the wheel): P(person) per pixel."""

    def __init__(self) -> None:
        from .mediapipe_support import solutions

        selfie_segmentation = solutions().selfie_segmentation

        self._model = selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        result = self._model.process(np.ascontiguousarray(rgb))
        return np.asarray(result.segmentation_mask, dtype=np.float32)

    def close(self) -> None:
        self._model.close()


def _weights_dirs(config: SynthConfig, what: str) -> list[str]:
    if not config.weights_dir:
        raise ConfigError(f"{what} needs weights_dir (--weights-dir): the seed bundle or 3DDFA folders")
    return [d for d in str(config.weights_dir).split(os.pathsep) if d]


def _make_fitter(config: SynthConfig, device: torch.device) -> Fitter:
    if config.fitter == "mediapipe":
        from .fit.mediapipe_fit import MediapipeFitter

        return MediapipeFitter()
    if config.fitter == "3ddfa":
        from .fit.tddfa import TDDFAFitter
        from .seed_bundle import SeedBundle

        bundle = SeedBundle.locate(*_weights_dirs(config, "the 3ddfa fitter"), need=("fitter",))
        return TDDFAFitter.from_bundle(bundle, device=device)
    raise ConfigError(f"fitter {config.fitter!r} is not 'mediapipe' or '3ddfa'")


def _make_refiner(config: SynthConfig, device: torch.device) -> Refiner | None:
    if config.refiner == "none":
        return None
    if config.refiner == "rotate_and_render":
        from .refine.rotate_and_render import RotateAndRenderRefiner
        from .seed_bundle import SeedBundle

        bundle = SeedBundle.locate(*_weights_dirs(config, "the rotate_and_render refiner"), need=("generator",))
        return RotateAndRenderRefiner.from_bundle(bundle, device=device)
    raise ConfigError(f"refiner {config.refiner!r} is not 'none' or 'rotate_and_render'")


def _shape2(image) -> tuple[int, int]:
    shape = getattr(image, "shape", (0, 0))
    return (int(shape[0]), int(shape[1])) if len(shape) >= 2 else (0, 0)


def _check_image(image) -> str | None:
    if not isinstance(image, np.ndarray):
        return f"not a numpy image but {type(image).__name__}"
    if image.ndim != 3 or image.shape[2] != 3:
        return f"expected an RGB image (H, W, 3), got shape {image.shape}"
    if image.dtype != np.uint8:
        return f"expected uint8 pixels, got {image.dtype}"
    if image.shape[0] < 16 or image.shape[1] < 16:
        return f"image of {image.shape[1]}x{image.shape[0]} pixels is too small to hold a face"
    if image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        return f"image of {image.shape[1]}x{image.shape[0]} pixels exceeds {MAX_IMAGE_PIXELS} pixels"
    return None


def _rot_z_batch(angle: np.ndarray) -> np.ndarray:
    """(N,) angles (radians) -> (N, 3, 3) rotations about the viewing axis."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.zeros((len(angle), 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    return rot


def _to_device(arrays: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Stack same-shaped host arrays into one device tensor; through page-locked memory on CUDA, where a
    pageable copy costs several times more than the stacking itself."""
    first = np.asarray(arrays[0])
    if device.type != "cuda":
        return torch.from_numpy(np.stack(arrays))
    dtype = torch.from_numpy(np.empty(0, first.dtype)).dtype
    host = torch.empty((len(arrays), *first.shape), dtype=dtype, pin_memory=True)
    np.stack(arrays, out=host.numpy())
    return host.to(device, non_blocking=True)


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    """Start copying a device tensor to the host (page-locked memory on CUDA: the copy is several times
    faster and asynchronous). Synchronise the stream before reading the result."""
    if tensor.device.type != "cuda":
        return tensor.cpu()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


def _rotate_weighted(verts: torch.Tensor, weights: torch.Tensor, aa: torch.Tensor, centre: torch.Tensor):
    """Rotate each vertex about ``centre`` by its weight times the axis-angle ``aa`` (Rodrigues)."""
    theta = aa.norm(dim=-1, keepdim=True)  # (B, 1)
    axis = aa / theta.clamp_min(1e-12)
    phi = theta * weights  # (B, V)
    p = verts - centre[:, None, :]
    k = axis[:, None, :].expand_as(p)
    cos, sin = torch.cos(phi)[..., None], torch.sin(phi)[..., None]
    dot = (k * p).sum(-1, keepdim=True)
    rotated = p * cos + torch.cross(k, p, dim=-1) * sin + k * dot * (1.0 - cos)
    return rotated + centre[:, None, :]


def _rodrigues(aa: torch.Tensor) -> torch.Tensor:
    """(B, 3) axis-angle vectors -> (B, 3, 3) rotation matrices."""
    theta = aa.norm(dim=-1).clamp_min(1e-12)[:, None, None]
    k = aa / theta[:, :, 0]
    zero = torch.zeros_like(k[:, 0])
    kx = torch.stack([zero, -k[:, 2], k[:, 1], k[:, 2], zero, -k[:, 0], -k[:, 1], k[:, 0], zero], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(kx)
    return eye + torch.sin(theta) * kx + (1 - torch.cos(theta)) * (kx @ kx)


def _stretched_triangles(src: torch.Tensor, out_xy: torch.Tensor, triangles: torch.Tensor, scale: torch.Tensor,
                         limit: float) -> torch.Tensor:
    """(B, F) bool: triangles whose screen area grew by more than ``limit`` versus the source view."""

    def area(xy: torch.Tensor) -> torch.Tensor:
        p = xy[:, triangles]  # (B, F, 3, 2)
        e1, e2 = p[:, :, 1] - p[:, :, 0], p[:, :, 2] - p[:, :, 0]
        return (e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]).abs() * 0.5

    before = area(src[..., :2]) * (scale**2)[:, None]
    return area(out_xy) > limit * before + 0.5  # +0.5 px^2: slivers that stay tiny are harmless


def _similarity_complex(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares 2D similarity dst ~ a * src + b with complex a, b, batched over src (B, K, 2)."""
    zs = torch.complex(src[..., 0], src[..., 1])
    zd = torch.complex(dst[..., 0], dst[..., 1]).expand_as(zs)
    ms, md = zs.mean(dim=1, keepdim=True), zd.mean(dim=1, keepdim=True)
    cs, cd = zs - ms, zd - md
    a = (cs.conj() * cd).sum(dim=1) / (cs.abs() ** 2).sum(dim=1).clamp_min(1e-12)
    b = md[:, 0] - a * ms[:, 0]
    return a, b


def _apply_complex(xy: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    z = torch.complex(xy[..., 0], xy[..., 1]) * a[:, None] + b[:, None]
    return torch.stack([z.real, z.imag], dim=-1)


def _to_texture(xy: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """Source pixels (B, H, W, 2) -> texture pixels with each view's (B, 2, 3) affine."""
    return torch.einsum("bij,bhwj->bhwi", affine[:, :, :2], xy) + affine[:, None, None, :, 2]


def _blend_corners(corner_values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N * 3, C) values at each pixel's three triangle corners, (3, N) barycentrics -> (N, C)."""
    values = corner_values.view(-1, 3, corner_values.shape[-1])
    out = values[:, 0] * weights[0, :, None]
    out.addcmul_(values[:, 1], weights[1, :, None])
    return out.addcmul_(values[:, 2], weights[2, :, None])


def _sample_points(maps: torch.Tensor, uv: torch.Tensor, job: torch.Tensor) -> torch.Tensor:
    """Nearest sample of per-job single-channel maps (J, 1, T, T) at points uv (N, 2) of jobs ``job``."""
    height, width = maps.shape[-2:]
    x = uv[:, 0].floor().long().clamp_(0, width - 1)
    y = uv[:, 1].floor().long().clamp_(0, height - 1)
    return maps.reshape(-1).index_select(0, (job * height + y) * width + x)


def _sample_per_job(images: torch.Tensor, uv: torch.Tensor, n_jobs: int, mode: str) -> torch.Tensor:
    """Sample per-job images (J, C, T, T) at texture pixel coords uv (J*views, H, W, 2) -> (B, H, W, C).

    The views of one job are stacked into one tall sampling grid so that every job's texture is read
    once, without copying it per view.
    """
    batch, height, width, _ = uv.shape
    per_job = batch // n_jobs
    grid = uv.reshape(n_jobs, per_job * height, width, 2)
    size = torch.tensor([images.shape[-1], images.shape[-2]], dtype=uv.dtype, device=uv.device)
    grid = grid / size * 2.0 - 1.0
    out = F.grid_sample(images, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(batch, height, width, images.shape[1])


def _push_pull_fill(colour_sum: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Fill unknown pixels smoothly from known ones (push-pull pyramid), batched: (B, H, W, C)."""
    c = colour_sum.permute(0, 3, 1, 2)
    w = weight.permute(0, 3, 1, 2)
    levels = [(c, w)]
    while min(c.shape[-2:]) > 1:
        c = F.avg_pool2d(c, 2, ceil_mode=True)
        w = F.avg_pool2d(w, 2, ceil_mode=True)
        levels.append((c, w))
    c, w = levels[-1]
    filled = c / w.clamp_min(1e-8)
    for c, w in reversed(levels[:-1]):
        up = F.interpolate(filled, size=c.shape[-2:], mode="bilinear", align_corners=False)
        wk = w.clamp(0.0, 1.0)
        filled = torch.where(w > 1e-8, c / w.clamp_min(1e-8), up) * wk + up * (1.0 - wk)
    return filled.permute(0, 2, 3, 1)


def _or_pool(flags: torch.Tensor, factor: int) -> torch.Tensor:
    """Bitwise OR of each factor x factor block of a (B, H, W) uint8 flag map."""
    if factor == 1:
        return flags
    b, h, w = flags.shape
    blocks = flags.reshape(b, h // factor, factor, w // factor, factor)
    out = torch.zeros((b, h // factor, w // factor), dtype=torch.uint8, device=flags.device)
    for dy in range(factor):
        for dx in range(factor):
            out |= blocks[:, :, dy, :, dx]
    return out


__all__ = ["FaceSynthesizer", "resolve_device", "target_pose", "FaceDetection"]
