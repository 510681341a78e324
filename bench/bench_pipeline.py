"""Benchmark of the engine: per-stage latency and views/s of the batched render pass.

Stages per image (CPU, mediapipe): detect, fit, scene. The batched device pass (all faces x views in one
go): upload, transform, rasterize, interpolate+visibility, texture, antialias+composite, download.

    python bench/bench_pipeline.py --device cpu --faces 1,8,32 --views 8
    # prepare scenes here (needs mediapipe), render them on a GPU machine (needs only torch + numpy):
    python bench/bench_pipeline.py --save-scenes build/scenes.pkl
    python bench/bench_pipeline.py --load-scenes build/scenes.pkl --device cuda --faces 1,8,32,64

Prints one JSON line per configuration (and appends them to --json FILE when given). Medians over
--repeats runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opendr_face_synth.core.config import SynthConfig  # noqa: E402
from opendr_face_synth.core.synthesizer import FaceSynthesizer  # noqa: E402

YAWS_8 = (-60.0, -45.0, -30.0, -15.0, 15.0, 30.0, 45.0, 60.0)


def sample_images(shared: Path | None) -> list[np.ndarray]:
    from opendr_face_synth.io.samples import astronaut_rgb

    images = [astronaut_rgb()]
    if shared is not None and (shared / "data/faces").is_dir():
        import cv2

        for name in ("trump_hillary.jpg", "JianzhuGuo.jpg"):
            bgr = cv2.imread(str(shared / "data/faces" / name))
            if bgr is not None:
                images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return images


def prepare_jobs(images: list[np.ndarray], size: int, repeats: int):
    """Run detect/fit/scene on the sample images; return the jobs and per-stage medians (ms per image)."""
    synth = FaceSynthesizer(SynthConfig(yaws=(0.0,), output_size=size, device="cpu"))
    stage: dict[str, list[float]] = {"detect": [], "fit": [], "scene": []}
    jobs = []
    for run in range(repeats + 1):
        for image in images:
            result, run_jobs = synth.prepare(image, 0)
            if run > 0:
                for key in stage:
                    stage[key].append(result.timings_ms[key] / max(1, len(result.faces)))
            if run == 0:
                jobs += run_jobs
    synth.close()
    return jobs, {k: statistics.median(v) for k, v in stage.items()}


def render_benchmark(jobs, device: str, faces: int, views: int, size: int, repeats: int, supersampling: int) -> dict:
    config = SynthConfig(yaws=YAWS_8[:views] if views <= 8 else tuple(np.linspace(-60, 60, views)),
                         output_size=size, device=device, supersampling=supersampling)
    synth = FaceSynthesizer(config, detector=_Unused(), fitter=_Unused(), person_segmenter=lambda rgb: rgb)
    batch = [jobs[i % len(jobs)] for i in range(faces)]
    synth.render_jobs(batch)  # warm-up (allocator, kernels)
    totals, stages = [], []
    for _ in range(repeats):
        synth.stage_times_ms = {}
        if synth.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        synth.render_jobs(batch)
        if synth.device.type == "cuda":
            torch.cuda.synchronize()
        totals.append((time.perf_counter() - t0) * 1e3)
        stages.append(synth.stage_times_ms)
    # Stage timings synchronise the device after every stage; the total above is timed separately,
    # without them, so it is the number that counts for throughput.
    synth.stage_times_ms = None
    plain = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        synth.render_jobs(batch)
        if synth.device.type == "cuda":
            torch.cuda.synchronize()
        plain.append((time.perf_counter() - t0) * 1e3)
    median_ms = statistics.median(plain)
    return {
        "faces": faces, "views_per_face": views, "size": size, "supersampling": supersampling,
        "device": str(synth.device),
        "render_ms_median": round(median_ms, 2),
        "views_per_s": round(faces * views / (median_ms / 1e3), 1),
        "stage_ms_median": {k: round(statistics.median(s[k] for s in stages), 2) for k in stages[0]},
        "repeats": repeats,
    }


def compare_devices(jobs, device: str, size: int) -> dict:
    """Render the same prepared faces on CPU and on ``device``; how far apart are the 8-bit views?"""
    views = {}
    for dev in ("cpu", device):
        synth = FaceSynthesizer(SynthConfig(yaws=(-30.0, 30.0), pitches=(15.0,), output_size=size, device=dev),
                                detector=_Unused(), fitter=_Unused(), person_segmenter=lambda rgb: rgb)
        views[dev] = [v for face in synth.render_jobs(jobs) for v in face]
    diffs = np.concatenate([np.abs(a.image.astype(int) - b.image.astype(int)).ravel()
                            for a, b in zip(views["cpu"], views[device], strict=True)])
    masks = np.concatenate([(a.mask != b.mask).ravel() for a, b in zip(views["cpu"], views[device], strict=True)])
    return {"device": device, "views": len(views["cpu"]), "mean_abs_diff": round(float(diffs.mean()), 4),
            "p99_abs_diff": int(np.percentile(diffs, 99)), "max_abs_diff": int(diffs.max()),
            "mask_mismatch_fraction": round(float(masks.mean()), 5)}


class _Unused:
    """Stands in for detector/fitter when only prepared scenes are rendered."""

    def close(self) -> None:
        return None


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--faces", default="1,8,32")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--supersampling", default="2", help="comma list of render supersampling factors")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--save-scenes", type=Path)
    parser.add_argument("--load-scenes", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--compare-cpu", action="store_true", help="also check --device output against CPU")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    records = []
    if args.load_scenes:
        jobs = pickle.loads(args.load_scenes.read_bytes())
        stages = None
    else:
        jobs, stages = prepare_jobs(sample_images(args.shared), args.size, args.repeats)
        records.append({"kind": "per_face_cpu_stages_ms_median", **{k: round(v, 2) for k, v in stages.items()},
                        "faces_in_samples": len(jobs)})
        if args.save_scenes:
            args.save_scenes.parent.mkdir(parents=True, exist_ok=True)
            args.save_scenes.write_bytes(pickle.dumps(jobs))
    if args.compare_cpu:
        records.append({"kind": "device_vs_cpu", **compare_devices(jobs, args.device, args.size)})
    for ss in [int(f) for f in args.supersampling.split(",") if f]:
        for faces in [int(f) for f in args.faces.split(",") if f]:
            records.append({"kind": "render_pass", **render_benchmark(jobs, args.device, faces, args.views, args.size,
                                                                      args.repeats, ss)})
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "argv": sys.argv[1:]}
    for record in records:
        line = json.dumps({**record, **meta})
        print(line, flush=True)
        if args.json:
            with args.json.open("a") as fh:
                fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
