"""``opendr-face-synth``: build a multi-view face dataset from a photo folder (and other subcommands).

    opendr-face-synth generate IN OUT --yaw -60,-30,0,30,60 --pitch -20,20 [--grid] ...

Exit status: 0 when at least one view was written; 1 when nothing at all could be produced (or the
run had to stop because OUT became unwritable, e.g. disk full); 2 for usage errors, with a message
naming the flag. Every unusable input file is reported by name with its reason and the run goes on.

Other subcommands plug in without touching this file: a module listed in ``SUBCOMMAND_MODULES`` that
exists is imported when the parser is built and its ``add_subcommand(subparsers)`` is called. It must
add one parser and ``set_defaults(handler=fn)`` with ``fn(args) -> int`` (the exit status), and keep
heavy imports (rclpy, torch) inside ``fn`` so that ``generate`` and ``--help`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import cv2

from ..core.config import ConfigError, SynthConfig, parse_angle_list
from ..io.dataset import DatasetWriter, OutputWriteError
from ..io.images import IMAGE_EXTENSIONS, ImageItem, ImageReadError, list_images, read_image
from ..io.seed_layout import SEED_DIR, SeedLayoutWriter

PROG = "opendr-face-synth"
EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LAYOUTS = ("dataset", "seed")  # output trees: io/dataset.py (person folders), io/seed_layout.py (the seed's)
SUBCOMMAND_MODULES = ("opendr_face_synth.cli.export_bag",)

# Errors the engine may raise for one bad image (out of memory, a degenerate fit...): that image is
# reported and skipped. Anything else is a bug and is left to surface with its traceback.
ENGINE_ERRORS = (RuntimeError, ValueError, MemoryError, ArithmeticError, cv2.error)

# SynthConfig / engine error messages start with a field name; this maps it to the flag to name.
GENERATE_FLAGS = {
    "yaws": "--yaw",
    "pitches": "--pitch",
    "no views requested": "--yaw/--pitch",
    "output_size": "--size",
    "supersampling": "--supersampling",
    "background": "--background",
    "max_faces": "--max-faces",
    "min_face_size": "--min-face-size",
    "device": "--device",
    "render_backend": "--render-backend",
    "fitter": "--fitter",
    "refiner": "--refiner",
    "weights_dir": "--weights-dir",
    "detection_confidence": "--min-confidence",
}

SynthesizerFactory = Callable[[SynthConfig], Any]


class UsageError(Exception):
    """A bad argument found after parsing (missing input, bad config value); exit status 2."""


@dataclass
class GenerateJob:
    """Everything one `generate` run needs, whichever front-end (this CLI, the seed tool) built it."""

    input_path: Path
    output_path: Path
    config: SynthConfig
    save_masks: bool = False
    contact_sheets: bool = True
    batch_images: int = 8
    progress: bool = True
    layout: str = "dataset"  # one of LAYOUTS
    flags: dict[str, str] = field(default_factory=lambda: dict(GENERATE_FLAGS))


@dataclass
class RunStats:
    images: int = 0
    images_failed: int = 0
    faces: int = 0
    views: int = 0
    failures: int = 0
    elapsed: float = 0.0

    def summary(self) -> str:
        rate = self.views / self.elapsed if self.elapsed > 0 else 0.0
        return (
            f"{self.images} images ({self.images_failed} unusable), {self.faces} faces, "
            f"{self.views} views written, {self.failures} failures, {self.elapsed:.1f} s, {rate:.1f} views/s"
        )


def main(argv: Sequence[str] | None = None, synthesizer_factory: SynthesizerFactory | None = None) -> int:
    """Console entry point; ``synthesizer_factory`` (SynthConfig -> engine) is injectable for tests."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(synthesizer_factory)
    args = parser.parse_args(merge_angle_tokens(argv, ("--yaw", "--pitch")))
    if getattr(args, "handler", None) is None:
        parser.error("a command is required, e.g. 'generate IN OUT' (see --help)")
    return int(args.handler(args))


def build_parser(synthesizer_factory: SynthesizerFactory | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Multi-view face datasets (Rotate-and-Render style).")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    gen = subparsers.add_parser(
        "generate",
        help="photos (a folder or one file) -> one folder of rotated views per person",
        description="Rotate every face of every photo under IN to the requested angles and write the views, "
        "metadata.csv, failures.csv and per-person contact sheets under OUT. Person = top-level sub-folder "
        "of IN (a loose file is its own person).",
    )
    add_generate_arguments(gen)
    gen.set_defaults(handler=lambda args: generate_command(args, gen, synthesizer_factory))
    for module_name in SUBCOMMAND_MODULES:
        _add_plugin(module_name, subparsers)
    return parser


def add_generate_arguments(gen: argparse.ArgumentParser) -> None:
    gen.add_argument("input", metavar="IN", help="a folder of photos (searched recursively) or one image file")
    gen.add_argument("output", metavar="OUT", help="output folder (created; files of the same name are replaced)")
    gen.add_argument(
        "--yaw",
        nargs="+",
        metavar="DEG",
        default=None,
        help="target yaw angles in degrees: '-60,-30,0,30,60', '10, 40' or '10 40' "
        "(default -60,-30,0,30,60; '' for none)",
    )
    gen.add_argument(
        "--pitch",
        nargs="+",
        metavar="DEG",
        default=None,
        help="target pitch angles in degrees, same forms (default none)",
    )
    gen.add_argument(
        "--grid",
        action="store_true",
        help="every yaw x every pitch (default: one view per yaw and one per pitch, as the seed)",
    )
    gen.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    gen.add_argument(
        "--render-backend",
        choices=("builtin", "neural_renderer", "auto"),
        default="builtin",
        help="rasterizer: builtin (PyTorch, default), neural_renderer (the seed's CUDA renderer, must be built: "
        "docs/neural_renderer.md) or auto (neural_renderer when usable on the device)",
    )
    gen.add_argument("--size", type=int, default=256, help="output view size in pixels (default 256)")
    gen.add_argument("--supersampling", type=int, default=2,
                     help="anti-aliasing: render at N x the size and average "
                     "(default 2; 1 is 2.4-3.4x faster on CPU, see BENCHMARKS.md)")
    gen.add_argument(
        "--background",
        choices=("scene", "black"),
        default="scene",
        help="scene: rotated head on the photo's background; black: the face alone (seed-like)",
    )
    gen.add_argument("--max-faces", type=int, default=0, help="faces per image, best detection score first (0 = all)")
    gen.add_argument("--min-face-size", type=int, default=32, help="ignore faces smaller than this, in pixels")
    gen.add_argument(
        "--save-masks", action="store_true", help="also write OUT/masks/<person>/<view>.png (255 = real source texture)"
    )
    gen.add_argument("--fitter", choices=("mediapipe", "3ddfa"), default="mediapipe", help="3D face fitter")
    gen.add_argument(
        "--refiner",
        choices=("none", "rotate_and_render"),
        default="none",
        help="rotate_and_render runs the seed's generator (needs --weights-dir)",
    )
    gen.add_argument("--weights-dir", metavar="DIR", default=None, help="folder with 3DDFA / Rotate-and-Render weights")
    gen.add_argument("--batch-images", type=int, default=8, metavar="N", help="images per engine call (default 8)")
    gen.add_argument(
        "--no-contact-sheets",
        dest="contact_sheets",
        action="store_false",
        help="do not write OUT/contact_sheets/<person>.png",
    )
    gen.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    gen.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="dataset",
        help="dataset: one folder per person (default); seed: the seed tool's names and folders, "
        "OUT/rs_model/example/Images_orig|Images_aligned/<stem>_yaw_<rad>.jpg (docs/seed_weights.md)",
    )


def generate_command(
    args: argparse.Namespace, parser: argparse.ArgumentParser, synthesizer_factory: SynthesizerFactory | None
) -> int:
    """`generate`: turn parsed arguments into a job; usage problems exit 2 through ``parser.error``."""
    try:
        yaws = parse_angle_list(args.yaw, "--yaw") if args.yaw is not None else SynthConfig().yaws
        pitches = parse_angle_list(args.pitch, "--pitch") if args.pitch is not None else ()
        if args.batch_images < 1:
            raise UsageError(f"--batch-images: {args.batch_images} is not a positive number")
        for folder in (args.weights_dir or "").split(os.pathsep):  # several folders: separated like PATH
            if folder and not Path(folder).is_dir():
                raise UsageError(f"--weights-dir: {folder} is not a folder")
        config = SynthConfig(
            yaws=yaws,
            pitches=pitches,
            grid=args.grid,
            output_size=args.size,
            supersampling=args.supersampling,
            device=args.device,
            render_backend=args.render_backend,
            background=args.background,
            max_faces=args.max_faces,
            min_face_size=args.min_face_size,
            fitter=args.fitter,
            refiner=args.refiner,
            weights_dir=args.weights_dir,
        )
        job = GenerateJob(
            input_path=Path(args.input),
            output_path=Path(args.output),
            config=config,
            save_masks=args.save_masks,
            contact_sheets=args.contact_sheets,
            batch_images=args.batch_images,
            progress=args.progress,
            layout=args.layout,
        )
        return run_generate(job, synthesizer_factory, in_flag="IN", out_flag="OUT")
    except (ConfigError, UsageError) as exc:
        parser.error(name_flag(str(exc), GENERATE_FLAGS))
    return EXIT_USAGE  # not reached: parser.error exits


def run_generate(
    job: GenerateJob,
    synthesizer_factory: SynthesizerFactory | None = None,
    *,
    in_flag: str = "IN",
    out_flag: str = "OUT",
    err: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """The generate code path shared by every front-end. Raises ConfigError / UsageError for usage errors."""
    err = err or sys.stderr
    out = out or sys.stdout
    job.config.validate()
    if job.layout not in LAYOUTS:
        raise UsageError(f"layout {job.layout!r} is not one of {', '.join(LAYOUTS)}")
    items = collect_inputs(job.input_path, job.output_path, in_flag, out_flag)
    if not items:
        print(f"error: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {job.input_path}", file=err)
        return EXIT_NOTHING
    factory = synthesizer_factory or _default_factory
    start = time.perf_counter()
    try:
        synth = factory(job.config)
    except (RuntimeError, OSError, ImportError) as exc:
        print(f"error: cannot start the engine: {type(exc).__name__}: {exc}", file=err)
        return EXIT_NOTHING
    requests = getattr(synth, "view_requests", None) or job.config.view_requests()
    labels = " ".join(request.label() for request in requests)
    print(
        f"{len(items)} images, {len(requests)} views per face ({labels}), device {getattr(synth, 'device', '?')}",
        file=err,
    )
    stats = RunStats()
    status = EXIT_OK
    writer_class = SeedLayoutWriter if job.layout == "seed" else DatasetWriter
    writer = writer_class(job.output_path, save_masks=job.save_masks, contact_sheets=job.contact_sheets)
    try:
        writer.open()
        _process_all(items, synth, writer, job, stats, err)
        writer.close()
    except KeyboardInterrupt:
        print("\ninterrupted: metadata.csv lists every view written so far", file=err)
        status = EXIT_INTERRUPTED
    except OutputWriteError as exc:
        print(f"error: {exc}; stopping (metadata.csv in {job.output_path} lists what was written)", file=err)
        status = EXIT_NOTHING
    finally:
        _close_quietly(writer, err)
        close = getattr(synth, "close", None)
        if close is not None:
            close()
    stats.views, stats.faces, stats.failures = writer.views_written, writer.faces_written, writer.failures
    stats.elapsed = time.perf_counter() - start
    print(f"done: {stats.summary()}", file=out)
    print(f"output: {job.output_path} (metadata.csv, failures.csv)", file=out)
    if job.layout == "seed":
        print(f"views: {job.output_path / SEED_DIR} (Images_orig, Images_aligned)", file=out)
    if status == EXIT_OK and stats.views == 0:
        print("error: nothing could be produced (see failures.csv)", file=err)
        status = EXIT_NOTHING
    return status


def _close_quietly(writer: DatasetWriter, err: TextIO) -> None:
    """Close after an error: a second write error (the last contact sheet on a full disk) is only noted."""
    try:
        writer.close()
    except OutputWriteError as exc:
        print(f"error: {exc}", file=err)


def collect_inputs(input_path: Path, output_path: Path, in_flag: str, out_flag: str) -> list[ImageItem]:
    """IN as a list of photos (a single file is one person named by its stem); checks IN and OUT."""
    if output_path.exists() and not output_path.is_dir():
        raise UsageError(f"{out_flag}: {output_path} exists and is not a folder")
    if input_path.is_file():
        return [ImageItem(path=input_path, person=input_path.stem, rel=Path(input_path.name))]
    if not input_path.is_dir():
        raise UsageError(f"{in_flag}: {input_path} does not exist")
    items = list_images(input_path)
    # OUT inside IN: never read our own outputs back as inputs on a second run.
    out_resolved = output_path.resolve()
    return [item for item in items if out_resolved not in item.path.resolve().parents]


def name_flag(message: str, flags: dict[str, str]) -> str:
    """Prefix a config error with the flag it is about (SynthConfig messages start with the field name)."""
    if message.startswith(("-", "IN:", "OUT:")):
        return message
    for key, flag in flags.items():
        if message.startswith(key):
            return f"{flag}: {message}"
    for key, flag in flags.items():
        if key in message:
            return f"{flag}: {message}"
    return message


_ANGLE_CHARS = re.compile(r"^[-+0-9., ]+$")


def merge_angle_tokens(argv: Iterable[str], flags: Sequence[str]) -> list[str]:
    """Join the values after an angle flag into one ``FLAG=VALUE`` token.

    argparse takes ``-60,-30`` or ``-10,`` for an option (only a plain negative number is recognised), so
    ``--yaw -60,-30,0`` and the seed's documented ``-val_yaw 10, 40`` would fail. Tokens made only of
    digits, signs, dots, commas and spaces that follow the flag are its values; the first other token
    ends the list. ``--`` ends option processing as usual.
    """
    merged: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            merged.extend(tokens[i:])
            break
        flag, eq, first = token.partition("=")
        if flag in flags:
            values = [first] if eq else []
            i += 1
            while i < len(tokens) and _is_angle_token(tokens[i]):
                values.append(tokens[i])
                i += 1
            if values:
                merged.append(f"{flag}={' '.join(values)}")
            else:
                merged.append(token)  # no numeric value follows: argparse reports or takes what comes next
            continue
        merged.append(token)
        i += 1
    return merged


def _is_angle_token(token: str) -> bool:
    return bool(_ANGLE_CHARS.match(token)) and any(ch.isdigit() or ch == "," for ch in token)


def _process_all(
    items: list[ImageItem], synth: Any, writer: DatasetWriter, job: GenerateJob, stats: RunStats, err: TextIO
) -> None:
    from tqdm import tqdm

    with tqdm(total=len(items), file=err, unit="img", disable=not job.progress, dynamic_ncols=True) as bar:

        def report(file: Path | str, reason: str) -> None:
            bar.write(f"skipped {file}: {reason}", file=err)

        for start in range(0, len(items), job.batch_images):
            batch = items[start : start + job.batch_images]
            loaded: list[tuple[ImageItem, Any]] = []
            for item in batch:
                stats.images += 1
                try:
                    loaded.append((item, read_image(item.path)))
                except ImageReadError as exc:
                    stats.images_failed += 1
                    report(item.rel, exc.reason)
                    writer.add_failure(item.rel, exc.reason)
            for item, rgb, result in _synthesize(synth, loaded, report, writer):
                writer.add_result(item, rgb, result)
                if result.error:
                    report(item.rel, result.error)
                for index, face in enumerate(result.faces):
                    if face.error:
                        report(item.rel, f"face {index}: {face.error}")
            bar.update(len(batch))
            bar.set_postfix(views=writer.views_written, refresh=False)


def _synthesize(
    synth: Any, loaded: list[tuple[ImageItem, Any]], report: Callable[[Path | str, str], None], writer: DatasetWriter
) -> list[tuple[ImageItem, Any, Any]]:
    """One engine call per batch; if it fails, image by image, so one bad image cannot sink the others."""
    if not loaded:
        return []

    def fail(item: ImageItem, exc: BaseException) -> None:
        reason = f"engine error: {type(exc).__name__}: {exc}".splitlines()[0]
        report(item.rel, reason)
        writer.add_failure(item.rel, reason)

    try:
        results = synth.process([rgb for _, rgb in loaded])
        if len(results) != len(loaded):
            raise RuntimeError(f"engine returned {len(results)} results for {len(loaded)} images")
        return [(item, rgb, result) for (item, rgb), result in zip(loaded, results, strict=True)]
    except ENGINE_ERRORS as exc:
        if len(loaded) == 1:
            fail(loaded[0][0], exc)
            return []
    done = []
    for item, rgb in loaded:
        try:
            (result,) = synth.process([rgb])
        except ENGINE_ERRORS as exc:
            fail(item, exc)
            continue
        done.append((item, rgb, result))
    return done


def _default_factory(config: SynthConfig) -> Any:
    from ..core.synthesizer import FaceSynthesizer

    return FaceSynthesizer(config)


def _add_plugin(module_name: str, subparsers: Any) -> None:
    """Let an optional module add its subcommand; a module that is not there is simply not offered."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return
        print(f"{PROG}: note: {module_name.rsplit('.', 1)[-1]} unavailable ({exc})", file=sys.stderr)
        return
    except ImportError as exc:
        print(f"{PROG}: note: {module_name.rsplit('.', 1)[-1]} unavailable ({exc})", file=sys.stderr)
        return
    module.add_subcommand(subparsers)


if __name__ == "__main__":
    sys.exit(main())
