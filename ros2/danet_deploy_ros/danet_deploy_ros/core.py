"""What both node variants share: the session, publishers, subscriptions, diagnostics and the
per-mask publishing, attached to any rclpy node (a plain ``Node`` or a ``LifecycleNode``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from . import params
from .pipeline import Pipeline

NAME = "segmentation"


def input_qos(values: dict[str, Any]) -> Any:
    """Subscription QoS: best-effort, keep-last 1 by default (the newest frame only; the
    ``qos_profile_sensor_data`` preset keeps 5), overridden by ``qos_depth``/``qos_reliability``."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliability = (
        ReliabilityPolicy.BEST_EFFORT if values["qos_reliability"] == "best_effort" else ReliabilityPolicy.RELIABLE
    )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(values["qos_depth"]),
        reliability=reliability,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos() -> Any:
    """``~/label_info``: reliable, transient-local, depth 1: a subscriber that joins late still gets it."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def label_info(session: Any) -> str:
    """Class ids, names and overlay colours as JSON (``vision_msgs/LabelInfo`` has no pip wheel)."""
    from danet_deploy.runtime.preprocess import palette
    from danet_deploy.runtime.ros_images import mask_encoding

    names = session.class_names or [str(c) for c in range(session.num_classes)]
    colors = palette(session.num_classes)
    return json.dumps(
        {
            "num_classes": session.num_classes,
            "mask_encoding": mask_encoding(session.num_classes),
            "classes": [
                {"id": c, "name": names[c] if c < len(names) else str(c), "color": [int(v) for v in colors[c]]}
                for c in range(session.num_classes)
            ],
        }
    )


class Segmenter:
    """The node's work, attached to ``node``: :meth:`load` (session and publishers), :meth:`start`
    (subscriptions), :meth:`stop`, :meth:`close`. ``values`` are the checked parameter values."""

    def __init__(self, node: Any, values: dict[str, Any]) -> None:
        self.node, self.values = node, dict(values)
        self.session: Any = None
        self.pipeline: Pipeline | None = None
        self.subscriptions: list[Any] = []
        self.timer: Any = None

    # -- lifetime ------------------------------------------------------------------------------
    def load(self) -> None:
        """Open the artifact and create the publishers (raises a DanetDeployError on a bad artifact)."""
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from danet_deploy import runtime

        options = {"threads": int(self.values["threads"])} if self.values["threads"] else {}
        self.session = runtime.load(self.values["artifact"], backend=self.values["backend"] or None, **options)
        node = self.node
        self.mask_pub = node.create_publisher(Image, "~/mask", 1)
        self.overlay_pub = node.create_publisher(Image, "~/overlay", 1)
        self.label_pub = node.create_publisher(String, "~/label_info", latched_qos())
        self.diag_pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.label_pub.publish(String(data=label_info(self.session)))
        self.pipeline = Pipeline(
            self.session, self._publish, node.get_logger().warning, max_pixels=int(self.values["max_pixels"])
        )
        self.timer = node.create_timer(float(self.values["diagnostics_period"]), self.publish_diagnostics)
        node.get_logger().info(f"loaded {self.values['artifact']}: {self.session.describe()}")

    def start(self) -> None:
        """Subscribe to the input topics (the callbacks only hand the message over: no work there)."""
        from sensor_msgs.msg import CompressedImage, Image

        qos = input_qos(self.values)
        assert self.pipeline is not None
        submit = self.pipeline.submit
        if self.values["image_topic"]:
            self.subscriptions.append(self.node.create_subscription(Image, self.values["image_topic"], submit, qos))
        if self.values["compressed_topic"]:
            self.subscriptions.append(
                self.node.create_subscription(CompressedImage, self.values["compressed_topic"], submit, qos)
            )
        topics = [t for t in (self.values["image_topic"], self.values["compressed_topic"]) if t]
        self.node.get_logger().info(f"segmenting {', '.join(topics) or 'nothing (no input topic set)'}")

    def stop(self) -> None:
        for sub in self.subscriptions:
            self.node.destroy_subscription(sub)
        self.subscriptions = []

    def close(self) -> None:
        """Unsubscribe, finish the frame in flight, join the worker, close the session."""
        self.stop()
        if self.timer is not None:
            self.node.destroy_timer(self.timer)
            self.timer = None
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None
        for name in ("mask_pub", "overlay_pub", "label_pub", "diag_pub"):
            publisher = self.__dict__.pop(name, None)
            if publisher is not None:
                self.node.destroy_publisher(publisher)
        if self.session is not None:
            self.session.close()
            self.session = None

    # -- parameters ----------------------------------------------------------------------------
    def on_set(self, changes: list[Any]) -> Any:
        """``add_on_set_parameters_callback``: refuse a bad value with its reason (rclpy has already
        refused read-only parameters and values outside a descriptor's range)."""
        from rcl_interfaces.msg import SetParametersResult

        for change in changes:
            reason = params.refusal(change.name, change.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for change in changes:
            if change.name in params.BY_NAME:
                self.values[change.name] = change.value
        return SetParametersResult(successful=True)

    # -- output --------------------------------------------------------------------------------
    def _publish(self, msg: Any, rgb: np.ndarray, mask: np.ndarray, timings: dict[str, float]) -> None:
        """On the pipeline's worker thread: the mask (and overlay) with the input's header."""
        from sensor_msgs.msg import Image

        from danet_deploy.runtime.preprocess import overlay
        from danet_deploy.runtime.ros_images import (
            array_to_image_fields,
            mask_to_image_fields,
        )

        session = self.session
        if session is None:
            return
        out = Image(**mask_to_image_fields(mask, session.num_classes))
        out.header = msg.header
        self.mask_pub.publish(out)
        if self.values["publish_overlay"] and self.overlay_pub.get_subscription_count() > 0:
            blend = Image(
                **array_to_image_fields(overlay(rgb, mask, session.num_classes, float(self.values["alpha"])), "rgb8")
            )
            blend.header = msg.header
            self.overlay_pub.publish(blend)

    def publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        if self.pipeline is None or self.session is None:
            return
        snap = self.pipeline.snapshot()
        describe = self.session.describe()
        bad_total = sum(snap["bad"].values())
        values = {
            "fps": f"{snap['fps']:.2f}",
            "masks": str(snap["masks"]),
            "latency_p50_ms": _ms(snap["latency_p50_ms"]),
            "latency_p99_ms": _ms(snap["latency_p99_ms"]),
            "frames_dropped": str(snap["dropped"]),
            "bad_frames": str(bad_total),
            **{f"bad_frames_{cause}": str(n) for cause, n in sorted(snap["bad"].items())},
            "engine_errors": str(snap["engine_errors"]),
            "engine": f"{describe.get('backend', '')} {describe.get('target', '')} {describe.get('precision', '')}".strip(),
            "artifact": str(self.values["artifact"]),
        }
        level = DiagnosticStatus.WARN if bad_total or snap["engine_errors"] else DiagnosticStatus.OK
        status = DiagnosticStatus(
            level=level,
            name=f"{self.node.get_name()}: segmentation",
            hardware_id=values["engine"],
            message="bad input frames dropped"
            if bad_total
            else ("engine errors" if snap["engine_errors"] else "running"),
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.node.get_clock().now().to_msg()
        self.diag_pub.publish(array)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
