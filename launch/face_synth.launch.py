"""Launch face_synth_node: `ros2 launch opendr_face_synth face_synth.launch.py image_topic:=/camera/image_raw`.

Arguments: image_topic, config_file, device, record, bag_dir (empty device / record / bag_dir: the config
file's values).
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "opendr_face_synth"


def _node(context, *args, **kwargs):
    """Build the node once the arguments are known, so empty arguments leave the config file's values."""
    overrides = {}
    device = LaunchConfiguration("device").perform(context).strip()
    if device:
        overrides["device"] = device
    record = LaunchConfiguration("record").perform(context).strip().lower()
    if record not in ("", "true", "false"):
        raise ValueError(f"record:={record!r}: expected true or false")
    if record:
        overrides["record"] = record == "true"
    bag_dir = LaunchConfiguration("bag_dir").perform(context).strip()
    if bag_dir:
        overrides["bag_dir"] = bag_dir
    return [
        Node(
            package=PACKAGE,
            executable="face_synth_node",
            name="face_synth_node",
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("config_file"), overrides],
            remappings=[
                ("image", LaunchConfiguration("image_topic")),
                ("image/compressed", [LaunchConfiguration("image_topic"), "/compressed"]),
            ],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("image_topic", default_value="image_raw", description="input sensor_msgs/Image"),
            DeclareLaunchArgument(
                "config_file",
                default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "face_synth.yaml"]),
                description="parameter file of face_synth_node",
            ),
            DeclareLaunchArgument("device", default_value="", description="auto | cpu | cuda | cuda:N"),
            DeclareLaunchArgument(
                "record", default_value="", description="true: record a bag from the start (empty: the config's)"
            ),
            DeclareLaunchArgument("bag_dir", default_value="", description="folder for the bags"),
            OpaqueFunction(function=_node),
        ]
    )
