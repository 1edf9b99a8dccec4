"""Run a command inside a private network namespace with loopback only, for trying the node, its
tests and benchmarks without DDS discovery traffic (multicast) leaving the machine.

Needs root (or user namespaces) and util-linux ``unshare``. Every process of one call shares the
namespace; ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a random ``ROS_DOMAIN_ID`` are set too.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence


def unavailable() -> str | None:
    """Why a private network namespace cannot be made here (None: it can)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "util-linux unshare and iproute2 ip are needed for a private network namespace"
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"cannot create a network namespace (unshare -n needs root): {probe.stderr.strip()[:200]}"
    return None


def network_interfaces() -> list[str]:
    """This process's network interfaces, from ``/proc/self/net/dev`` (per network namespace;
    ``/sys/class/net`` keeps showing the host's after ``unshare -n`` unless sysfs is remounted)."""
    with open("/proc/self/net/dev", encoding="ascii") as table:
        return [line.split(":", 1)[0].strip() for line in table.readlines()[2:] if ":" in line]


def require_isolated() -> None:
    """Refuse to go on unless this process sees loopback only. Why: the test and benchmark drivers
    publish and discover over DDS; started by hand outside :func:`run_isolated`, their multicast
    discovery would leave the machine."""
    others = [name for name in network_interfaces() if name != "lo"]
    if others:
        raise SystemExit(
            f"refusing to start ROS 2 outside a private network namespace (interfaces: {', '.join(others)}); "
            "run it through danet_deploy_ros.sandbox.run_isolated (unshare -n, loopback only)"
        )


def ros_env(base: Mapping[str, str] | None = None, domain_id: int | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_DOMAIN_ID=str(domain_id if domain_id is not None else random.randint(1, 100)),
        ORT_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_isolated(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float | None = None, **kwargs: object
) -> subprocess.CompletedProcess:
    """``argv`` inside ``unshare -n`` after bringing loopback up (output captured as text)."""
    script = "ip link set lo up && exec " + " ".join(shlex.quote(a) for a in argv)
    return subprocess.run(
        ["unshare", "-n", "bash", "-c", script],
        env=ros_env(env),
        timeout=timeout,
        capture_output=True,
        text=True,
        check=False,
        **kwargs,
    )  # type: ignore[call-overload]
