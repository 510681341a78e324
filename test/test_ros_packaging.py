"""The ROS 2 packaging in the pip-based set-up: the built messages import from anywhere, the
executables resolve like launch_ros resolves them and run without an activated venv, bad start-up
parameters stop the node with the reason, the config file matches the declared parameters, and the
launch files run through `launch` where ROS provides it."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy", reason="rclpy is not importable (bash scripts/setup_env.sh installs it)")

from opendr_face_synth.ros.testing import isolated_domain, localhost_env  # noqa: E402

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "opendr_face_synth"
PREFIX = Path(sys.prefix)


def _clean_env(**extra: str) -> dict[str, str]:
    """What a fresh shell has: no activated venv, no PYTHONPATH, no ROS variables."""
    env = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def _require_built() -> None:
    if not (PREFIX / "share" / PACKAGE / ".msgs-stamp").is_file():
        pytest.skip(f"messages not built into {PREFIX} by scripts/build_msgs.sh (colcon builds: colcon test)")


def test_messages_import_from_any_directory_without_environment_variables(tmp_path: Path) -> None:
    _require_built()
    code = (
        "import opendr_face_synth, opendr_face_synth.msg as m, opendr_face_synth.core.config as c;"
        "msg = m.SynthFaceArray(); msg.faces = [m.SynthFace(views=[m.SynthView()])];"
        "from rclpy.serialization import serialize_message, deserialize_message;"
        "back = deserialize_message(serialize_message(msg), m.SynthFaceArray);"
        "print(opendr_face_synth.__version__, m.SynthFaceArray.VERSION, len(back.faces[0].views),"
        " c.SynthConfig.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.1.0", "1", "1", "SynthConfig"]


def test_executables_resolve_like_launch_ros_and_use_the_venv_interpreter() -> None:
    _require_built()
    from ament_index_python.packages import get_package_prefix

    os.environ.setdefault("AMENT_PREFIX_PATH", str(PREFIX))
    assert Path(get_package_prefix(PACKAGE)) == PREFIX
    marker = PREFIX / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
    assert marker.is_file()
    for exe in ("face_synth_node", "camera_replay"):
        path = PREFIX / "lib" / PACKAGE / exe
        assert path.is_file() and os.access(path, os.X_OK), path
        assert path.read_text().splitlines()[0] == f"#!{PREFIX / 'bin' / 'python'}"
    for sub in ("launch/face_synth.launch.py", "launch/face_synth_demo.launch.py", "config/face_synth.yaml"):
        assert (PREFIX / "share" / PACKAGE / sub).is_file(), sub
    assert (PREFIX / "share" / PACKAGE / "msg" / "SynthFaceArray.msg").is_file()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["-p", "output_size:=5"], "out of range"),
        (["-p", "yaws:=[100.0]"], "outside [-90, 90]"),
        (["-p", "device:=tpu"], "is not auto, cpu, cuda or cuda:N"),
        (["-p", 'yaws:=""', "-p", 'pitches:=""'], "no views requested"),
    ],
)
def test_invalid_parameters_stop_the_node_at_start_with_the_reason(args: list[str], reason: str) -> None:
    _require_built()
    exe = PREFIX / "lib" / PACKAGE / "face_synth_node"
    env = _clean_env(**localhost_env(isolated_domain(3), base={}))
    t0 = time.monotonic()
    done = subprocess.run([str(exe), "--ros-args", *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert reason in done.stdout + done.stderr
    assert time.monotonic() - t0 < 60


def test_config_file_declares_exactly_the_node_parameters_with_their_defaults() -> None:
    from opendr_face_synth.ros.node import PARAMETERS

    config = yaml.safe_load((ROOT / "config" / "face_synth.yaml").read_text())
    params = config["face_synth_node"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        assert value == PARAMETERS[name][0], name
    text = (ROOT / "config" / "face_synth.yaml").read_text()
    for name in PARAMETERS:  # every parameter is documented on its line
        assert re.search(rf"^\s+{name}: .+#", text, re.MULTILINE), name


def test_the_config_file_loads_into_the_node(tmp_path: Path) -> None:
    """rcl parses the YAML (types matter: a list mixing ints and floats would be refused)."""
    _require_built()
    code = (
        "import sys, rclpy; from opendr_face_synth.ros.node import FaceSynthNode, PARAMETERS;"
        "rclpy.init(args=['--ros-args', '--params-file', sys.argv[1]]);"
        "n = FaceSynthNode(synthesizer_factory=lambda c: c);"  # the config is all this test needs
        "print(n.get_parameter('yaws').value, n.get_parameter('bag_storage').value);"
        "n.shutdown(); n.destroy_node(); rclpy.shutdown()"
    )
    env = localhost_env(isolated_domain(3))
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "config" / "face_synth.yaml")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "[-60.0, -30.0, 0.0, 30.0, 60.0] mcap" in done.stdout


def test_build_msgs_is_idempotent() -> None:
    """A second run right after a first one (which rebuilds only if an input changed) does nothing."""
    _require_built()
    cmd = ["bash", str(ROOT / "scripts" / "build_msgs.sh"), str(PREFIX)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    t0 = time.monotonic()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "messages up to date" in second.stdout
    assert time.monotonic() - t0 < 30


def test_launch_files_name_existing_executables_and_arguments() -> None:
    """Checks that need no `launch` install: syntax, and what they reference exists."""
    for name in ("face_synth.launch.py", "face_synth_demo.launch.py"):
        text = (ROOT / "launch" / name).read_text()
        compile(text, name, "exec")
        for exe in re.findall(r'executable="([^"]+)"', text):
            assert exe in ("face_synth_node", "camera_replay")
    main = (ROOT / "launch" / "face_synth.launch.py").read_text()
    for arg in ("image_topic", "config_file", "device", "record", "bag_dir"):
        assert re.search(rf'DeclareLaunchArgument\(\s*"{arg}"', main), arg


_HAVE_LAUNCH = all(importlib.util.find_spec(m) is not None for m in ("launch", "launch_ros", "launch_testing"))


@pytest.mark.skipif(
    not _HAVE_LAUNCH,
    reason="`launch`, `launch_ros` and `launch_testing` are not on PyPI; this runs where ROS 2 provides them "
    "(colcon test on a ROS machine)",
)
def test_launch_files_run_under_launch(tmp_path: Path) -> None:
    """`ros2 launch` equivalent through the launch API: the demo starts both nodes, records, exits 0."""
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    import launch

    env_before = dict(os.environ)
    os.environ.update(localhost_env(isolated_domain(5)))
    try:
        source = PythonLaunchDescriptionSource(str(ROOT / "launch" / "face_synth_demo.launch.py"))
        description = launch.LaunchDescription(
            [
                launch.actions.IncludeLaunchDescription(
                    source,
                    launch_arguments={
                        "record": "true",
                        "bag_dir": str(tmp_path),
                        "device": "cpu",
                        "rate": "5.0",
                    }.items(),
                ),
                launch.actions.TimerAction(period=25.0, actions=[launch.actions.Shutdown(reason="test done")]),
            ]
        )
        service = launch.LaunchService()
        service.include_launch_description(description)
        assert service.run() == 0
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    bags = list(tmp_path.glob("face_synth_*/metadata.yaml"))
    assert bags, "the demo launch recorded no bag"
