"""Demo without a camera: camera_replay publishes a video, an image folder or the bundled sample, and
face_synth_node processes (and by default records) it.

`ros2 launch opendr_face_synth face_synth_demo.launch.py source:=sample rate:=10.0 record:=true`
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "opendr_face_synth"


def generate_launch_description() -> LaunchDescription:
    topic = "/face_synth_demo/image"
    replay = Node(
        package=PACKAGE,
        executable="camera_replay",
        name="camera_replay",
        output="screen",
        parameters=[
            {
                "source": LaunchConfiguration("source"),
                "rate": ParameterValue(LaunchConfiguration("rate"), value_type=float),
                "loop": True,
            }
        ],
        remappings=[("image", topic)],
    )
    synth = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare(PACKAGE), "launch", "face_synth.launch.py"])
        ),
        launch_arguments={
            "image_topic": topic,
            "config_file": LaunchConfiguration("config_file"),
            "device": LaunchConfiguration("device"),
            "record": LaunchConfiguration("record"),
            "bag_dir": LaunchConfiguration("bag_dir"),
        }.items(),
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument("source", default_value="sample", description="video file, image folder or 'sample'"),
            DeclareLaunchArgument("rate", default_value="10.0", description="frames per second"),
            DeclareLaunchArgument(
                "config_file",
                default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "face_synth.yaml"]),
            ),
            DeclareLaunchArgument("device", default_value=""),
            DeclareLaunchArgument("record", default_value="true"),
            DeclareLaunchArgument("bag_dir", default_value=""),
            replay,
            synth,
        ]
    )
