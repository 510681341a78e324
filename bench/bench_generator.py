"""Benchmark of the Rotate-and-Render generator (full size: ngf 64, 225M parameters) at 256x256.

The published checkpoint is not available here, so the weights are random but loaded through the real
strict loader and folding path (`load_generator`), which is what a user's checkpoint goes through.

    python bench/bench_generator.py --device cuda --batch 1,8,32 --dtype fp32,fp16

Prints one JSON line per (dtype, batch): median ms per batch, images/s, achieved TFLOP/s (FLOPs counted by
torch's FlopCounterMode on one forward; a multiply-add counts as 2 FLOPs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opendr_face_synth.core.refine.rotate_and_render import RotateSPADEGenerator, load_generator  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def random_checkpoint() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    gen = RotateSPADEGenerator()
    gen.train()
    with torch.no_grad():  # power iterations: spectral-norm u, v consistent with the weights, as when trained
        for _ in range(2):
            gen(torch.randn(2, 3, 64, 64), (torch.rand(2, 5, 64, 64) > 0.7).float())
    gen.eval()
    return {k: v.clone() for k, v in gen.state_dict().items()}


def flops_per_image(model, device: torch.device, dtype: torch.dtype, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    render = torch.zeros(1, 3, size, size, device=device, dtype=dtype)
    seg = torch.zeros(1, 5, size, size, device=device, dtype=dtype)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(render, seg)
    return float(counter.get_total_flops())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", default="1,8,32")
    parser.add_argument("--dtype", default="fp32,fp16")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    state = random_checkpoint()
    meta = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "argv": sys.argv[1:],
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    for dtype_name in args.dtype.split(","):
        dtype = DTYPES[dtype_name]
        model = load_generator(state, device=device, dtype=dtype)
        flops = flops_per_image(model, device, dtype, args.size)
        fmt = torch.channels_last if getattr(model, "channels_last", False) else torch.contiguous_format
        for batch in [int(b) for b in args.batch.split(",")]:
            render = torch.rand(batch, 3, args.size, args.size, device=device, dtype=dtype) * 2 - 1
            seg = (torch.rand(batch, 5, args.size, args.size, device=device) > 0.9).to(dtype)
            render, seg = render.contiguous(memory_format=fmt), seg.contiguous(memory_format=fmt)
            times = []
            with torch.inference_mode():
                for i in range(args.repeats + 3):
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    t0 = time.perf_counter()
                    out = model(render, seg)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    if i >= 3:  # warm-up: cuDNN algorithm search, allocator
                        times.append((time.perf_counter() - t0) * 1e3)
            assert out.shape == (batch, 3, args.size, args.size) and torch.isfinite(out).all()
            median_ms = statistics.median(times)
            record = {
                "kind": "generator", "dtype": dtype_name, "batch": batch, "size": args.size,
                "median_ms": round(median_ms, 3), "images_per_s": round(batch / median_ms * 1e3, 1),
                "gflop_per_image": round(flops / 1e9, 1),
                "tflops": round(flops * batch / (median_ms / 1e3) / 1e12, 1), "repeats": args.repeats, **meta,
            }
            line = json.dumps(record)
            print(line, flush=True)
            if args.json:
                with args.json.open("a") as fh:
                    fh.write(line + "\n")
        del model
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
