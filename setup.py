"""Setup for fogros_dist: a pip-installable Python package that is also an ament_python package."""

from __future__ import annotations

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fogros_dist"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={
        PACKAGE: [
            "py.typed",
            "providers/aws/prices.json",
            # Grid intensity, PUE and power factors of a run's footprint (train/footprint.py).
            "train/footprint_factors.json",
            # Stock .srv/.action definitions the bridge registers on demand (ros/interfaces.py).
            "ros/stock_interfaces/*/SOURCES.txt",
            "ros/stock_interfaces/*/*/LICENSE",
            "ros/stock_interfaces/*/*/*/*",
        ]
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        # The pinned runtime, for `ros2 run fogros_dist install_runtime` and the machines' wheels.
        (f"share/{PACKAGE}", ["package.xml", "requirements.txt", "requirements-build.txt"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
    ],
    python_requires=">=3.10",
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="fogros_dist developers",
    maintainer_email="fogros-dist@example.org",
    description="Fog robotics for ROS 2: offload nodes to GPU machines and bridge their topics back.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "fogros-dist = fogros_dist.cli.main:main",
            # Installs the pinned runtime into the Python it runs on (ROS 2's, after colcon build).
            "install_runtime = fogros_dist.install_runtime:main",
            # Node executables: `ros2 run fogros_dist <name>`, or CloudNode(executable=<name>).
            "edge_detector = fogros_dist.nodes.edge_detector:main",
            "grasp_planner = fogros_dist.workloads.grasp.node:main",
            "slam_node = fogros_dist.workloads.slam.node:main",
            "policy_node = fogros_dist.workloads.policy.node:main",
            # A training fleet's node on each machine (fogros-dist train --on FLEET).
            "train_agent = fogros_dist.train.agent:main",
        ],
        "ros2cli.command": [
            "fogdist = fogros_dist.cli.ros2_command:FogDistCommand",
        ],
        # Third-party providers register here: name = "module:ProviderClass".
        "fogros_dist.providers": [],
    },
)
