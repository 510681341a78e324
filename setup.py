"""pip / colcon install of opendr_face_synth (the ROS-free core, the CLI and the ROS 2 node)."""

from setuptools import find_packages, setup

PACKAGE = "opendr_face_synth"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Multi-view face datasets from camera streams and photo folders (Rotate-and-Render, fast)",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        # ROS 2 files (the messages themselves are built by scripts/build_msgs.sh or colcon).
        (f"share/{PACKAGE}/launch", ["launch/face_synth.launch.py", "launch/face_synth_demo.launch.py"]),
        (f"share/{PACKAGE}/config", ["config/face_synth.yaml"]),
        (f"share/{PACKAGE}/msg", [f"msg/{m}.msg" for m in ("HeadPose", "SynthView", "SynthFace", "SynthFaceArray")]),
    ],
    install_requires=[],  # see requirements*.txt; ROS machines provide rclpy themselves
    entry_points={
        "console_scripts": [
            "opendr-face-synth = opendr_face_synth.cli.main:main",
            "tool_synthetic_facial_generation = opendr_face_synth.cli.seed_tool:main",
            "face_synth_node = opendr_face_synth.ros.node:main",
            "camera_replay = opendr_face_synth.ros.camera_replay:main",
        ],
    },
)
