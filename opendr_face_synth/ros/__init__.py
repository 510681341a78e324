"""ROS 2 layer: face_synth_node (node.py) and camera_replay, image conversion, tracking, mosaic,
diagnostics, bag recording, the demo runner and test helpers. See docs/ros.md.

Nothing is imported here, so the core and the CLI never load rclpy by accident.
"""
