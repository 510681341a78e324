"""``tool_synthetic_facial_generation``: a drop-in for OpenDR's tool of that name (seed-spec §10.1).

Same single-dash flags and angle defaults as the original::

    tool_synthetic_facial_generation -path_in ./demos/imgs_input/ -path_3ddfa ./algorithm/DDFA/ \\
        -save_path ./results -val_yaw 10, 40 -val_pitch 10, 30 -device cuda

Differences, all deliberate (seed-spec §11):

* The documented ``-val_yaw 10, 40`` works (the original crashes on the token ``10,``), and so do
  ``10,40`` and ``10 40``; leaving the flags out gives yaw 10, 20 and pitch 30, 40 as OpenDR intends.
* ``-device`` is honoured (the original ignores it and needs CUDA); its default is ``auto`` rather
  than ``cuda`` so that the tool runs on machines without a GPU.
* ``-path_3ddfa``: when it holds a complete seed bundle (3DDFA network and whitening, the Basel Face Model
  files, ``checkpoints/rs_model/latest_net_G.pth`` at the seed's relative paths, see docs/seed_weights.md)
  the original method runs: 3DDFA fit + the paper's generator. Otherwise the default engine runs (it
  needs no weights) and a note says what was missing.
* The 3DDFA side-dump flags of the original (``--dump_ply``, ``--bbox_init``, ``-f``...) are accepted
  and ignored with a one-line note.
* Output: the ``generate`` layout (one folder per person, metadata.csv, see ``io/dataset.py``) instead of
  the original's ``<save_path>/rs_model/example/Images_orig/``; all image types, not only ``.jpg``.
  ``-seed_layout`` (or ``--seed-layout``) writes the original's tree instead, for scripts that depend on
  it: ``<save_path>/rs_model/example/Images_orig/<stem>_yaw_0.17.jpg``, the 224x224 ArcFace crop of the
  same view under ``Images_aligned/`` and ``example010_rotate_lmk.txt``; metadata.csv and failures.csv
  stay at ``<save_path>``. Every face is written (face k > 0 as ``<stem>_f<k>_<pose tag>.jpg``) and a
  name that is already taken gets ``_2``, ``_3``... after the stem instead of overwriting; the details
  are in ``io/seed_layout.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core.config import ConfigError, SynthConfig, parse_angle_list
from ..core.seed_bundle import BundleError, SeedBundle
from .main import EXIT_USAGE, GenerateJob, SynthesizerFactory, UsageError, merge_angle_tokens, name_flag, run_generate

PROG = "tool_synthetic_facial_generation"
SEED_FLAGS = {
    "yaws": "-val_yaw",
    "pitches": "-val_pitch",
    "no views requested": "-val_yaw/-val_pitch",
    "device": "-device",
    "weights_dir": "-path_3ddfa",
}

# Flags of the original tool (3DDFA's main.py options) that this implementation has no use for.
IGNORED_SEED_FLAGS: tuple[tuple[str, ...], ...] = (
    ("-f", "--files"),
    ("--show_flg",),
    ("--dump_res",),
    ("--dump_vertex",),
    ("--dump_ply",),
    ("--dump_pts",),
    ("--dump_roi_box",),
    ("--dump_pose",),
    ("--dump_depth",),
    ("--dump_pncc",),
    ("--dump_paf",),
    ("--paf_size",),
    ("--dump_obj",),
    ("--dlib_bbox",),
    ("--dlib_landmark",),
    ("-m", "--mode"),
    ("--bbox_init",),
    ("--dump_2d_img",),
    ("--dump_param",),
    ("--dump_lmk",),
    ("--save_dir",),
    ("--save_lmk_dir",),
    ("--img_list",),
    ("--rank",),
    ("--world_size",),
    ("--resume_idx",),
)
_GIVEN = "(given)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Seed-compatible multi-view facial image generation (OpenDR tool flags).",
        epilog="Also accepted and ignored, for compatibility: "
        + ", ".join("/".join(names) for names in IGNORED_SEED_FLAGS)
        + " (options of the original's 3DDFA stage).",
    )
    parser.add_argument("-path_in", required=True, help="input folder of photos (or one image file)")
    parser.add_argument("-path_3ddfa", default=None, help="3DDFA / seed weights folder (optional)")
    parser.add_argument("-save_path", default="./results", help="output folder (default ./results)")
    parser.add_argument(
        "-val_yaw", nargs="+", default=["10 20"], help="yaw angles: '10 20', '10,20' or '10, 20' (default 10 20)"
    )
    parser.add_argument("-val_pitch", nargs="+", default=["30 40"], help="pitch angles, same forms (default 30 40)")
    parser.add_argument("-device", default="auto", help="auto | cpu | cuda | cuda:N | gpu (default auto)")
    parser.add_argument(
        "-seed_layout",
        "--seed-layout",
        dest="seed_layout",
        action="store_true",
        help="write the views with the original's names and folders, <save_path>/rs_model/example/"
        "Images_orig|Images_aligned/<stem>_yaw_<rad>.jpg, instead of one folder per person",
    )
    ignored = parser.add_argument_group("accepted for compatibility with the original tool, ignored")
    for names in IGNORED_SEED_FLAGS:
        dest = "ignored_" + names[-1].lstrip("-")
        if names[0] == "-f":  # a list of files; '-f' alone gives [] (given, not None)
            ignored.add_argument(*names, dest=dest, nargs="*", default=None, help=argparse.SUPPRESS)
        else:  # str2bool / int / str options of the original, value optional here
            ignored.add_argument(*names, dest=dest, nargs="?", const=_GIVEN, default=None, help=argparse.SUPPRESS)
    return parser


def seed_method(weights_dir: str | None) -> tuple[str, str]:
    """(fitter, refiner): the original method (3DDFA fit, dense face model, the paper's generator) when
    ``weights_dir`` holds a complete seed bundle, else the default engine, saying why on stderr."""
    if weights_dir is None:
        return "mediapipe", "none"
    try:
        bundle = SeedBundle.locate(weights_dir, need=("fitter", "dense", "generator"))
    except BundleError as exc:
        print(f"note: -path_3ddfa {weights_dir} is not a complete seed bundle, so the default engine runs "
              f"(mediapipe fit, no generator):\n{exc}", file=sys.stderr)
        return "mediapipe", "none"
    print(f"note: seed bundle found, running the original method (3DDFA + Rotate-and-Render generator):\n"
          f"{bundle.describe()}", file=sys.stderr)
    return "3ddfa", "rotate_and_render"


def main(argv: Sequence[str] | None = None, synthesizer_factory: SynthesizerFactory | None = None) -> int:
    """Console entry point; ``synthesizer_factory`` (SynthConfig -> engine) is injectable for tests."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(merge_angle_tokens(argv, ("-val_yaw", "-val_pitch")))
    given = [names[-1] for names in IGNORED_SEED_FLAGS if getattr(args, "ignored_" + names[-1].lstrip("-")) is not None]
    if given:
        print(
            f"note: ignoring {', '.join(given)} (3DDFA side outputs of the original tool; not used here)",
            file=sys.stderr,
        )
    weights_dir = None
    if args.path_3ddfa is not None:
        if Path(args.path_3ddfa).is_dir():
            weights_dir = args.path_3ddfa
        else:
            print(
                f"note: -path_3ddfa {args.path_3ddfa} is not a folder; ignored (the default fitter needs no weights)",
                file=sys.stderr,
            )
    fitter, refiner = seed_method(weights_dir)
    device = "cuda" if args.device == "gpu" else args.device
    try:
        config = SynthConfig(
            yaws=parse_angle_list(args.val_yaw, "-val_yaw"),
            pitches=parse_angle_list(args.val_pitch, "-val_pitch"),
            device=device,
            weights_dir=weights_dir,
            fitter=fitter,
            refiner=refiner,
        )
        job = GenerateJob(
            input_path=Path(args.path_in),
            output_path=Path(args.save_path),
            config=config,
            layout="seed" if args.seed_layout else "dataset",
        )
        return run_generate(job, synthesizer_factory, in_flag="-path_in", out_flag="-save_path")
    except (ConfigError, UsageError) as exc:
        parser.error(name_flag(str(exc), SEED_FLAGS))
    return EXIT_USAGE  # not reached: parser.error exits


if __name__ == "__main__":
    sys.exit(main())
