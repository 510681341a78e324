"""Find the seed's weight files (Rotate-and-Render generator, 3DDFA network, whitening, face model) on disk.

Accepted layouts, relative to any of the given folders (seed-spec §10.3; docs/seed_weights.md says where each
file comes from):

* the OpenDR tool's project folder: ``checkpoints/rs_model/latest_net_G.pth`` and ``algorithm/DDFA/...``;
* the DDFA folder itself (the seed tool's ``-path_3ddfa``): ``models/phase1_wpdc_vdc.pth.tar``,
  ``train.configs/{u_shp,u_exp,w_shp_sim,w_exp_sim,keypoints_sim}.npy``, ``train.configs/param_whitening.pkl``,
  ``visualize/tri.mat`` (and the generator two folders up, where the seed tool keeps it);
* R&R's own checkout (``3ddfa/...`` instead of ``algorithm/DDFA/...``);
* a 3DDFA_V2 checkout: ``weights/mb1_120x120.pth`` or ``weights/mb05_120x120.pth``,
  ``configs/param_mean_std_62d_120x120.pkl``, ``configs/bfm_noneck_v3.pkl``, ``configs/tri.pkl``;
* any of these files lying directly in the folder, and the 68-landmark bases ``u_base.txt``,
  ``w_shp_base.txt``, ``w_exp_base.txt`` (3DDFA's C++ port) as the last-resort face model.

Nothing is searched for at import time; ``SeedBundle.locate`` looks only where it says it looks, and a
missing file is reported with every place it was looked for, all in one error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .fit.bfm import ModelFilesError, MorphableModel

_DDFA_PREFIXES = ("algorithm/DDFA/", "3ddfa/", "")  # OpenDR project, R&R checkout, the DDFA folder itself

GENERATOR_CANDIDATES = (
    "checkpoints/rs_model/latest_net_G.pth",
    "rs_model/latest_net_G.pth",
    "latest_net_G.pth",
    "../../checkpoints/rs_model/latest_net_G.pth",  # given the DDFA folder of the OpenDR tool
)

# 3DDFA networks with their whitening files (the two sets must not be mixed, seed-spec §3.2). The seed's v1
# network comes first: it is the one the R&R pipeline used.
REGRESSOR_FAMILIES = {
    "v1": (
        tuple(p + "models/phase1_wpdc_vdc.pth.tar" for p in _DDFA_PREFIXES),
        tuple(p + "train.configs/param_whitening.pkl" for p in _DDFA_PREFIXES) + ("param_whitening.pkl",),
    ),
    "v2": (
        ("weights/mb1_120x120.pth", "weights/mb05_120x120.pth", "mb1_120x120.pth", "mb05_120x120.pth"),
        ("configs/param_mean_std_62d_120x120.pkl", "param_mean_std_62d_120x120.pkl"),
    ),
}
# Bare file names also accepted directly in a folder.
_V1_REGRESSOR_FLAT = "phase1_wpdc_vdc.pth.tar"

# Face models, best first: the seed's dense 53,215-vertex mesh (what the R&R generator saw), V2's noneck mesh,
# then the 68 landmarks alone.
FACE_MODELS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "seed": tuple(
        (role, tuple(p + "train.configs/" + name for p in _DDFA_PREFIXES) + (name,))
        for role, name in (
            ("u_shp", "u_shp.npy"),
            ("u_exp", "u_exp.npy"),
            ("w_shp_sim", "w_shp_sim.npy"),
            ("w_exp_sim", "w_exp_sim.npy"),
            ("keypoints_sim", "keypoints_sim.npy"),
        )
    )
    + (("tri_mat", tuple(p + "visualize/tri.mat" for p in _DDFA_PREFIXES) + ("tri.mat",)),),
    "v2": (
        ("bfm_noneck_v3", ("configs/bfm_noneck_v3.pkl", "bfm_noneck_v3.pkl")),
        ("tri_pkl", ("configs/tri.pkl", "tri.pkl")),
    ),
    "keypoints": tuple(
        (role, tuple(p + name for p in ("train.configs/", "configs/", "weights/", "algorithm/DDFA/train.configs/", "")))
        for role, name in (("u_base", "u_base.txt"), ("w_shp_base", "w_shp_base.txt"), ("w_exp_base", "w_exp_base.txt"))
    ),
}
FACE_MODEL_NAMES = {
    "seed": "seed dense model (3DDFA v1)",
    "v2": "3DDFA_V2 dense model",
    "keypoints": "68-landmark bases",
}

NEEDS = ("fitter", "dense", "generator")


class BundleError(ModelFilesError):
    """Seed files are missing; the message lists each one with every place it was looked for."""


def _find(roots: Sequence[Path], candidates: Iterable[str]) -> tuple[Path | None, list[Path]]:
    """First existing candidate under the roots (roots in order, then candidates in order) + all tried."""
    tried: list[Path] = []
    for root in roots:
        for rel in candidates:
            path = (root / rel).resolve() if rel.startswith("..") else root / rel
            tried.append(path)
            if path.is_file():
                return path, tried
    return None, tried


def _tried_text(tried: list[Path], indent: str = "      ") -> str:
    return "\n".join(f"{indent}{p}" for p in dict.fromkeys(tried))


@dataclass
class SeedBundle:
    """Where each seed file is. ``paths`` maps a role (``generator``, ``regressor``, ``whitening`` and the face
    model's files) to a file; ``regressor_family`` is ``v1`` / ``v2``; ``face_model_kind`` is ``seed``, ``v2`` or
    ``keypoints``. Roles that were not found are absent."""

    roots: tuple[Path, ...]
    paths: dict[str, Path] = field(default_factory=dict)
    regressor_family: str | None = None
    face_model_kind: str | None = None

    @classmethod
    def locate(cls, *weights_dirs: str | Path, need: Iterable[str] = ("fitter", "generator")) -> SeedBundle:
        """Resolve the seed's files under one or more folders (searched in order).

        ``need``: ``fitter`` (3DDFA network + its whitening + any face model), ``dense`` (a dense face model) and
        ``generator`` (the R&R checkpoint). Everything needed but missing is reported in one BundleError.
        """
        need = tuple(need)
        unknown = [n for n in need if n not in NEEDS]
        if unknown or not weights_dirs:
            raise ValueError(f"locate(): need one or more folders and needs among {NEEDS}, got {unknown or need}")
        roots = tuple(Path(d).expanduser() for d in weights_dirs)
        bundle = cls(roots=roots)
        problems: list[str] = []

        generator, tried = _find(roots, GENERATOR_CANDIDATES)
        if generator is not None:
            bundle.paths["generator"] = generator
        elif "generator" in need:
            problems.append("Rotate-and-Render generator (latest_net_G.pth), looked for:\n" + _tried_text(tried))

        problems += bundle._locate_regressor(need)
        problems += bundle._locate_face_model(need)
        if problems:
            where = ", ".join(str(r) for r in roots)
            raise BundleError(f"seed bundle incomplete (searched {where}):\n  " + "\n  ".join(problems))
        return bundle

    def _locate_regressor(self, need: tuple[str, ...]) -> list[str]:
        tried_all: list[Path] = []
        for family, (nets, whitenings) in REGRESSOR_FAMILIES.items():
            candidates = nets + ((_V1_REGRESSOR_FLAT,) if family == "v1" else ())
            net, tried = _find(self.roots, candidates)
            tried_all += tried
            if net is None:
                continue
            # The whitening of the same family, looked for beside the network first.
            whitening, tried_w = _find(
                (net.parent, net.parent.parent, *self.roots),
                whitenings + tuple(w.rsplit("/", 1)[-1] for w in whitenings),
            )
            if whitening is None:
                return (
                    []
                    if "fitter" not in need
                    else [
                        f"whitening statistics for the 3DDFA {family} network {net}, looked for:\n"
                        + _tried_text(tried_w)
                    ]
                )
            self.paths.update(regressor=net, whitening=whitening)
            self.regressor_family = family
            return []
        if "fitter" in need:
            return [
                "3DDFA network (phase1_wpdc_vdc.pth.tar, mb1_120x120.pth or mb05_120x120.pth), looked for:\n"
                + _tried_text(tried_all)
            ]
        return []

    def _locate_face_model(self, need: tuple[str, ...]) -> list[str]:
        report: list[str] = []
        for kind, roles in FACE_MODELS.items():
            found: dict[str, Path] = {}
            missing: list[str] = []
            for role, candidates in roles:
                path, tried = _find(self.roots, candidates)
                if path is None:
                    missing.append(f"    {role}, looked for:\n" + _tried_text(tried, "        "))
                else:
                    found[role] = path
            if not missing:
                self.paths.update(found)
                self.face_model_kind = kind
                if kind == "keypoints" and "dense" in need:
                    break
                return []
            report.append(f"  {FACE_MODEL_NAMES[kind]}: missing\n" + "\n".join(missing))
        if "dense" in need:
            dense_report = [r for r in report if "68-landmark" not in r]
            return ["no dense face model (need the seed's or 3DDFA_V2's):\n" + "\n".join(dense_report)]
        if "fitter" in need:
            return ["no face model (need one complete set):\n" + "\n".join(report)]
        return []

    # ------------------------------------------------------------------------------------------- use
    def require(self, role: str) -> Path:
        """The path of a role, or a BundleError saying it was not found."""
        if role not in self.paths:
            where = ", ".join(str(r) for r in self.roots)
            raise BundleError(f"seed bundle: no {role} file was found (searched {where})")
        return self.paths[role]

    def face_model(self) -> MorphableModel:
        """Load the face model that was found (dense when possible)."""
        p = self.paths
        if self.face_model_kind == "seed":
            return MorphableModel.from_seed_files(
                p["u_shp"], p["u_exp"], p["w_shp_sim"], p["w_exp_sim"], p["keypoints_sim"], p["tri_mat"]
            )
        if self.face_model_kind == "v2":
            return MorphableModel.from_v2(p["bfm_noneck_v3"], p["tri_pkl"])
        if self.face_model_kind == "keypoints":
            return MorphableModel.from_keypoint_bases(p["u_base"], p["w_shp_base"], p["w_exp_base"])
        raise BundleError("seed bundle: no face model was located (call locate() with need=('fitter',))")

    def describe(self) -> str:
        """One line per found file, for logs."""
        lines = [f"{role}: {path}" for role, path in self.paths.items()]
        lines.append(f"3DDFA family: {self.regressor_family}; face model: {self.face_model_kind}")
        return "\n".join(lines)
