"""One typed configuration object for the whole pipeline (CLI, ROS node and library users)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import ViewRequest

MAX_ABS_ANGLE = 90.0
RENDER_BACKENDS = ("builtin", "neural_renderer", "auto")


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the value and the reason."""


@dataclass
class SynthConfig:
    yaws: tuple[float, ...] = (-60.0, -30.0, 0.0, 30.0, 60.0)
    pitches: tuple[float, ...] = ()
    grid: bool = False  # True: every yaw x every pitch; False: one view per yaw and one per pitch (seed)
    output_size: int = 256
    supersampling: int = 2  # rasterize at this many times the output size and average (anti-aliasing); 1 = fast
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    background: str = "scene"  # scene: whole-head composite on the photo; black: face mesh alone (seed-like)
    max_faces: int = 0  # 0 = all faces
    min_face_size: int = 32  # pixels, in the source image
    detection_confidence: float = 0.5
    fitter: str = "mediapipe"  # mediapipe | 3ddfa
    refiner: str = "none"  # none | rotate_and_render
    weights_dir: str | None = None  # seed bundle / 3DDFA weights (fitter 3ddfa, refiner rotate_and_render)
    # builtin: our PyTorch rasterizer; neural_renderer: the seed's CUDA renderer (optional, must be built:
    # docs/neural_renderer.md); auto: neural_renderer when it is usable on the device, else builtin
    render_backend: str = "builtin"
    extra: dict = field(default_factory=dict)  # backend-specific options

    def validate(self) -> SynthConfig:
        for name in ("yaws", "pitches"):
            for angle in getattr(self, name):
                if not isinstance(angle, (int, float)) or angle != angle:
                    raise ConfigError(f"{name}: {angle!r} is not a number")
                if abs(angle) > MAX_ABS_ANGLE:
                    raise ConfigError(f"{name}: {angle} degrees is outside [-90, 90]")
        if not self.yaws and not self.pitches:
            raise ConfigError("no views requested: give at least one yaw or pitch")
        if not 32 <= self.output_size <= 2048:
            raise ConfigError(f"output_size {self.output_size} is outside [32, 2048]")
        if self.supersampling not in (1, 2, 3, 4):
            raise ConfigError(f"supersampling {self.supersampling} is not 1, 2, 3 or 4")
        if self.background not in ("scene", "black"):
            raise ConfigError(f"background {self.background!r} is not 'scene' or 'black'")
        if self.max_faces < 0:
            raise ConfigError(f"max_faces {self.max_faces} is negative")
        if self.min_face_size < 8:
            raise ConfigError(f"min_face_size {self.min_face_size} is below 8 pixels")
        if not 0.0 < self.detection_confidence < 1.0:
            raise ConfigError(f"detection_confidence {self.detection_confidence} is not in (0, 1)")
        if self.render_backend not in RENDER_BACKENDS:
            raise ConfigError(f"render_backend {self.render_backend!r} is not one of {', '.join(RENDER_BACKENDS)}")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"device {dev!r} is not auto, cpu, cuda or cuda:N")
        return self

    def view_requests(self) -> list[ViewRequest]:
        """The views every face gets, in a fixed order (yaws first, then pitches; or the grid row-major)."""
        if self.grid:
            yaws = self.yaws or (None,)
            pitches = self.pitches or (None,)
            return [ViewRequest(yaw=y, pitch=p) for y in yaws for p in pitches]
        return [ViewRequest(yaw=y) for y in self.yaws] + [ViewRequest(pitch=p) for p in self.pitches]


def parse_angle_list(text: str | list[str] | tuple[str, ...], name: str = "angles") -> tuple[float, ...]:
    """Parse '10,40', '10, 40', '10 40' or a list of such tokens (the seed's documented forms)."""
    tokens = text if isinstance(text, (list, tuple)) else [text]
    values: list[float] = []
    for token in tokens:
        for part in str(token).replace(",", " ").split():
            try:
                value = float(part)
            except ValueError:
                raise ConfigError(f"{name}: {part!r} is not a number") from None
            if value != value or abs(value) > MAX_ABS_ANGLE:
                raise ConfigError(f"{name}: {part} degrees is outside [-90, 90]")
            values.append(value)
    return tuple(values)
