"""ROS 2 node: sensor_msgs/Image in, a mono8 class mask and an rgb8 overlay out, through danet_deploy.runtime.

    ros2 run ... (or) python3 danet_segmentation_node.py --ros-args -p artifact:=/path/to/artifact \
        -p threads:=2 -p image_topic:=/camera/image_raw

Parameters: ``artifact`` (folder written by danet-export; an ``--emit mask`` export keeps the
arg-max on the engine), ``threads``, ``image_topic``, ``mask_topic`` (default ``~/mask``),
``overlay_topic`` (default ``~/overlay``, empty to skip), ``alpha``. Only the newest image is
processed (queue depth 1, as a live camera wants).

The image <-> array conversion and the per-frame work are plain functions below, tested without
ROS (tests/test_ros2_example.py); the node itself needs rclpy from a ROS 2 installation (rclpy is
not published on PyPI) and was not run where this project is tested.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def image_to_rgb(height: int, width: int, encoding: str, step: int, data: bytes | bytearray | memoryview,
                 is_bigendian: int = 0) -> np.ndarray:
    """A sensor_msgs/Image's fields -> uint8 HxWx3 RGB (row padding in ``step`` removed)."""
    if encoding not in _CHANNELS:
        raise ValueError(f"unsupported image encoding {encoding!r}; publish one of {', '.join(_CHANNELS)}")
    channels = _CHANNELS[encoding]
    if step < width * channels or len(data) < step * height:
        raise ValueError(f"image buffer too small: {len(data)} bytes for {height} rows of step {step} "
                         f"({width}x{channels} {encoding})")
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if encoding in ("bgr8", "bgra8"):
        pixels = pixels[..., 2::-1]
    return np.ascontiguousarray(pixels[..., :3])


def array_to_image_fields(array: np.ndarray, encoding: str) -> dict[str, Any]:
    """uint8 HxW (mono8) or HxWx3 (rgb8) -> the fields of a sensor_msgs/Image."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    channels = 1 if array.ndim == 2 else array.shape[2]
    if _CHANNELS.get(encoding) != channels:
        raise ValueError(f"{encoding} needs {_CHANNELS.get(encoding)} channel(s), the array has {channels}")
    height, width = array.shape[:2]
    return {"height": height, "width": width, "encoding": encoding, "is_bigendian": 0,
            "step": width * channels, "data": array.tobytes()}


@dataclass
class FrameProcessor:
    """The node's per-frame work: image fields -> (mask fields, overlay fields)."""

    session: Any
    alpha: float = 0.5
    overlay: bool = True

    def __call__(self, msg: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        from danet_deploy.runtime.preprocess import overlay

        image = image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data, msg.is_bigendian)
        mask = self.session.run(image)
        if int(mask.max(initial=0)) > 255:
            raise ValueError("more than 256 classes do not fit a mono8 mask")
        mask_fields = array_to_image_fields(mask.astype(np.uint8), "mono8")
        blend = array_to_image_fields(overlay(image, mask, self.session.num_classes, self.alpha), "rgb8") \
            if self.overlay else None
        return mask_fields, blend


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - needs a ROS 2 installation
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSPresetProfiles
    from sensor_msgs.msg import Image

    from danet_deploy import runtime

    class SegmentationNode(Node):
        def __init__(self) -> None:
            super().__init__("danet_segmentation")
            artifact = self.declare_parameter("artifact", "").value
            if not artifact:
                raise SystemExit("set the 'artifact' parameter to a danet-export artifact folder")
            threads = int(self.declare_parameter("threads", 2).value)
            topic = self.declare_parameter("image_topic", "/camera/image_raw").value
            mask_topic = self.declare_parameter("mask_topic", "~/mask").value
            overlay_topic = self.declare_parameter("overlay_topic", "~/overlay").value
            alpha = float(self.declare_parameter("alpha", 0.5).value)
            self.session = runtime.load(artifact, threads=threads)
            self.process = FrameProcessor(self.session, alpha, overlay=bool(overlay_topic))
            qos = QoSPresetProfiles.SENSOR_DATA.value  # best effort, depth 1: the newest frame only
            self.mask_pub = self.create_publisher(Image, mask_topic, 1)
            self.overlay_pub = self.create_publisher(Image, overlay_topic, 1) if overlay_topic else None
            self.create_subscription(Image, topic, self.on_image, qos)
            self.get_logger().info(f"segmenting {topic} with {artifact} ({self.session.describe()})")

        def on_image(self, msg: Image) -> None:
            try:
                mask_fields, overlay_fields = self.process(msg)
            except Exception as exc:  # one bad frame must not stop the node
                self.get_logger().error(f"frame skipped: {exc}")
                return
            for publisher, fields in ((self.mask_pub, mask_fields), (self.overlay_pub, overlay_fields)):
                if publisher is None or fields is None:
                    continue
                out = Image(**{k: v for k, v in fields.items() if k != "data"})
                out.header = msg.header
                out.data = fields["data"]
                publisher.publish(out)

    rclpy.init(args=argv)
    node = SegmentationNode()
    try:
        rclpy.spin(node)
    finally:
        node.session.close()
        node.destroy_node()
        rclpy.shutdown()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv)
