"""Drives a running ``segmentation`` node from a second process (run inside a private network
namespace by tests/test_ros_node.py): starts the node from its installed executable, publishes
frames, collects masks, overlays, label_info, diagnostics and parameter answers, stops the node
with SIGINT, and writes everything to an .npz for the test to check.

    python ros_driver.py NODE_EXE ARTIFACT FRAMES.npz OUT.npz
    python ros_driver.py --lifecycle LIFECYCLE_EXE ARTIFACT OUT.json
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time

import numpy as np


def main(exe: str, artifact: str, frames_path: str, out_path: str) -> None:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String

    frames = np.load(frames_path)["frames"]
    node_proc = subprocess.Popen(
        [
            exe,
            "--ros-args",
            "-p",
            f"artifact:={artifact}",
            "-p",
            "image_topic:=/cam/image",
            "-p",
            "compressed_topic:=/cam/compressed",
            "-p",
            "threads:=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    rclpy.init()
    node = Node("driver")
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, "/cam/image", reliable)
    cpub = node.create_publisher(CompressedImage, "/cam/compressed", reliable)
    masks: dict[tuple[int, int], Image] = {}
    overlays: list[Image] = []
    diagnostics: list[DiagnosticArray] = []
    node.create_subscription(
        Image, "/segmentation/mask", lambda m: masks.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), m), 10
    )
    node.create_subscription(Image, "/segmentation/overlay", overlays.append, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)

    def spin_until(done, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if done():
                return True
            rclpy.spin_once(node, timeout_sec=0.02)
        return done()

    def image(rgb: np.ndarray, sec: int, encoding: str = "rgb8", pad: int = 0) -> Image:
        msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding)
        pixels = rgb[..., ::-1] if encoding == "bgr8" else rgb
        rows = np.zeros((rgb.shape[0], rgb.shape[1] * 3 + pad), np.uint8)
        rows[:, : rgb.shape[1] * 3] = pixels.reshape(rgb.shape[0], -1)
        msg.step, msg.data = rows.shape[1], rows.tobytes()
        msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, 1000 * sec, f"cam_{sec}"
        return msg

    def send(msg, publisher, key, timeout: float = 10.0) -> bool:
        """Publish until the mask with this stamp arrives (the first ones wait for discovery and loading)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            publisher.publish(msg)
            if spin_until(lambda: key in masks, 1.0):
                return True
        return False

    started = time.monotonic()
    first = send(image(frames[0], 1000), pub, (1000, 1000 * 1000), timeout=60.0)
    startup_s = time.monotonic() - started
    order = []
    for i, rgb in enumerate(frames):  # alternate encodings and padded rows; each waits for its mask
        sec = 2000 + i
        encoding, pad = ("bgr8", 8) if i % 3 == 1 else ("rgb8", 0)
        send(image(rgb, sec, encoding, pad), pub, (sec, 1000 * sec))
        order.append(sec)
    bad = Image(height=4, width=4, encoding="yuv422", step=8, data=bytes(32))
    bad.header.stamp.sec = 3000
    pub.publish(bad)
    spin_until(lambda: False, 0.3)  # taken before the next frame replaces it in the node's mailbox
    after_bad = send(image(frames[0], 3001), pub, (3001, 3001000))
    png = io.BytesIO()
    from PIL import Image as PILImage

    PILImage.fromarray(frames[1]).save(png, format="PNG")
    comp = CompressedImage(format="png", data=png.getvalue())
    comp.header.stamp.sec, comp.header.frame_id = 4000, "compressed"
    compressed_ok = send(comp, cpub, (4000, 0))
    junk = CompressedImage(format="jpeg", data=b"\xff\xd8 not a jpeg")
    junk.header.stamp.sec = 4001
    cpub.publish(junk)
    spin_until(lambda: False, 0.3)
    overlay_ok = send(image(frames[2], 4002), pub, (4002, 4002000)) and spin_until(
        lambda: any(o.header.stamp.sec == 4002 for o in overlays), 5.0
    )

    labels: list[String] = []  # subscribed late: transient-local delivers the message sent at start
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(String, "/segmentation/label_info", labels.append, latched)
    spin_until(lambda: labels, 10.0)

    def counted() -> dict[str, str]:
        for array in reversed(diagnostics):
            for status in array.status:
                values = {kv.key: kv.value for kv in status.values}
                if int(values.get("bad_frames", 0)) >= 2:
                    return values
        return {}

    spin_until(lambda: counted(), 10.0)

    client = node.create_client(SetParameters, "/segmentation/set_parameters")
    client.wait_for_service(timeout_sec=10.0)

    def set_param(name: str, value: ParameterValue) -> tuple[bool, str]:
        future = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=value)]))
        spin_until(future.done, 10.0)
        result = future.result().results[0]
        return bool(result.successful), result.reason

    answers = {
        "alpha=1.5": set_param("alpha", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=1.5)),
        "artifact": set_param(
            "artifact", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="/elsewhere")
        ),
        "alpha=0.25": set_param("alpha", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.25)),
    }
    still_running = send(image(frames[3], 5000), pub, (5000, 5000000))

    node_proc.send_signal(signal.SIGINT)
    try:
        rc = node_proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        node_proc.kill()
        rc = -999
    log = node_proc.stdout.read() if node_proc.stdout else ""
    mask_arrays = []
    headers = []
    for sec in order:
        m = masks.get((sec, 1000 * sec))
        mask_arrays.append(
            np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width)
            if m is not None
            else np.zeros(frames.shape[1:3], np.uint8)
        )
        headers.append(m.header.frame_id if m is not None else "")
    comp_mask = masks.get((4000, 0))
    summary = {
        "first": first,
        "startup_s": startup_s,
        "after_bad": after_bad,
        "compressed_ok": compressed_ok,
        "compressed_frame_id": comp_mask.header.frame_id if comp_mask else None,
        "overlay_ok": bool(overlay_ok),
        "overlay_encodings": sorted({o.encoding for o in overlays}),
        "received": sum((sec, 1000 * sec) in masks for sec in order),
        "mask_encoding": sorted({m.encoding for m in masks.values()}),
        "headers": headers,
        "label_info": labels[0].data if labels else None,
        "diagnostics": counted(),
        "answers": answers,
        "still_running": still_running,
        "rc": rc,
        "log": log,
    }
    np.savez(
        out_path,
        masks=np.stack(mask_arrays),
        compressed=np.frombuffer(bytes(comp_mask.data), np.uint8).reshape(comp_mask.height, comp_mask.width)
        if comp_mask
        else np.zeros((1, 1), np.uint8),
        summary=json.dumps(summary),
    )
    node.destroy_node()
    rclpy.try_shutdown()


def lifecycle(exe: str, artifact: str, out_path: str) -> None:
    """configure (a missing artifact first: refused, then the right one), activate, a frame in and a
    mask out, deactivate (no mask), cleanup, SIGINT."""
    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    proc = subprocess.Popen(
        [exe, "--ros-args", "-p", "artifact:=/no/such/artifact", "-p", "image_topic:=/cam/image"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    rclpy.init()
    node = Node("lifecycle_driver")
    masks: list[Image] = []
    node.create_subscription(Image, "/segmentation/mask", masks.append, 10)
    pub = node.create_publisher(Image, "/cam/image", 10)

    def call(client, request):
        client.wait_for_service(timeout_sec=30.0)
        future = client.call_async(request)
        end = time.monotonic() + 30
        while not future.done() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.02)
        return future.result()

    change, get = (
        node.create_client(ChangeState, "/segmentation/change_state"),
        node.create_client(GetState, "/segmentation/get_state"),
    )
    params = node.create_client(SetParameters, "/segmentation/set_parameters")

    def transition(tid: int) -> bool:
        return bool(call(change, ChangeState.Request(transition=Transition(id=tid))).success)

    def state() -> str:
        return call(get, GetState.Request()).current_state.label

    def frame_gives_mask(sec: int, wait: float) -> bool:
        msg = Image(height=8, width=8, encoding="rgb8", step=24, data=bytes(192))
        msg.header.stamp.sec = sec
        end = time.monotonic() + wait
        while time.monotonic() < end:
            pub.publish(msg)
            until = time.monotonic() + 0.5
            while time.monotonic() < until:
                rclpy.spin_once(node, timeout_sec=0.02)
            if any(m.header.stamp.sec == sec for m in masks):
                return True
        return False

    steps = {
        "initial": state(),
        "configure_missing": transition(Transition.TRANSITION_CONFIGURE),
        "after_failure": state(),
    }
    fix = Parameter(name="artifact", value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=artifact))
    steps["set_artifact"] = bool(call(params, SetParameters.Request(parameters=[fix])).results[0].successful)
    steps["configure"] = transition(Transition.TRANSITION_CONFIGURE)
    answer = call(params, SetParameters.Request(parameters=[fix])).results[0]
    steps["set_while_configured"] = [bool(answer.successful), answer.reason]
    steps["inactive_mask"] = frame_gives_mask(1, 1.5)
    steps["activate"] = transition(Transition.TRANSITION_ACTIVATE)
    steps["active_mask"] = frame_gives_mask(2, 30.0)
    steps["deactivate"] = transition(Transition.TRANSITION_DEACTIVATE)
    steps["deactivated_mask"] = frame_gives_mask(3, 1.5)
    steps["cleanup"] = transition(Transition.TRANSITION_CLEANUP)
    steps["final"] = state()
    proc.send_signal(signal.SIGINT)
    try:
        steps["rc"] = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        steps["rc"] = -999
    steps["log"] = proc.stdout.read() if proc.stdout else ""
    with open(out_path, "w") as handle:
        json.dump(steps, handle)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    from danet_deploy_ros import sandbox

    sandbox.require_isolated()
    if sys.argv[1] == "--lifecycle":
        lifecycle(*sys.argv[2:5])
    else:
        main(*sys.argv[1:5])
