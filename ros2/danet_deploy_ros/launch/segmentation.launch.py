"""Start the segmentation node with config/params.yaml; `artifact` and the camera topic from the
command line:

    ros2 launch danet_deploy_ros segmentation.launch.py artifact:=/models/danet_onnx image:=/camera/image_raw

Needs a full ROS 2 installation (launch, launch_ros); it is not run by this project's tests, which
start the installed executable directly (there are no launch wheels on PyPI).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    params = os.path.join(get_package_share_directory("danet_deploy_ros"), "config", "params.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument("artifact", description="folder written by danet-export"),
            DeclareLaunchArgument("image", default_value="/camera/image_raw", description="input image topic"),
            Node(
                package="danet_deploy_ros",
                executable="segmentation",
                name="segmentation",
                output="screen",
                parameters=[
                    params,
                    {"artifact": LaunchConfiguration("artifact"), "image_topic": LaunchConfiguration("image")},
                ],
            ),
        ]
    )
