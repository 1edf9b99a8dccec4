"""ament_python package: `colcon build` installs the executables into lib/danet_deploy_ros/."""

from glob import glob

from setuptools import setup

PACKAGE = "danet_deploy_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml", "README.md"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="danet-deploy",
    maintainer_email="danet-deploy@example.org",
    description="DANet scene segmentation node for ROS 2 (danet_deploy runtime)",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"segmentation = {PACKAGE}.node:main",
            f"segmentation_lifecycle = {PACKAGE}.lifecycle:main",
        ],
    },
)
