"""The ``segmentation`` node: parameters read and checked at start, then frames in, masks out.

segmentation --ros-args -p artifact:=/models/danet_onnx -r image:=/camera/image_raw
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from . import params
from .core import NAME, Segmenter

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def make_node() -> Any:
    from rclpy.node import Node

    class SegmentationNode(Node):
        def __init__(self) -> None:
            super().__init__(NAME)
            self.segmenter = Segmenter(self, params.declare(self))
            self.add_on_set_parameters_callback(self.segmenter.on_set)
            self.segmenter.load()
            self.segmenter.start()

    return SegmentationNode()


def spin(node: Any, close: Any) -> int:
    """Spin until Ctrl-C / SIGINT / SIGTERM, then close the node's work and log the threads left.

    A signal can also end the spin with an ``RCLError`` ("the given context is not valid"): rclpy's
    handler shuts the context down first, and when the signal lands while Python runs a finalizer
    (``Task.__del__``), the ``KeyboardInterrupt`` that should follow is swallowed there ("Exception
    ignored in ..."), so the executor goes on and its next wait fails. An error raised after the
    context was shut down is that shutdown, not a failure; one raised while it is still valid is.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
    finally:
        close()
        left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        print(f"[{NAME}] stopped; threads left: {left}", file=sys.stderr, flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    return EXIT_OK


def start_failed(exc: BaseException) -> int:
    """A bad parameter or artifact at start: one line naming the fix, exit code 2 (no traceback)."""
    import rclpy

    print(f"[{NAME}] error: {exc}", file=sys.stderr, flush=True)
    rclpy.try_shutdown()
    return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    import rclpy

    from danet_deploy.errors import DanetDeployError

    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = make_node()
    except (ValueError, DanetDeployError) as exc:
        return start_failed(exc)
    return spin(node, node.segmenter.close)


if __name__ == "__main__":
    sys.exit(main())
