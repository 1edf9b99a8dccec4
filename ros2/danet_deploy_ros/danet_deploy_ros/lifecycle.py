"""The ``segmentation_lifecycle`` node: the same work under a managed lifecycle.

``configure`` checks the parameters and loads the artifact, ``activate`` subscribes,
``deactivate`` unsubscribes, ``cleanup`` closes the session; a failed configure (bad artifact,
bad parameter) leaves the node unconfigured with the reason logged, and it can be fixed and
configured again.

    segmentation_lifecycle --ros-args -p artifact:=/models/danet_onnx
    (then a lifecycle manager, e.g. nav2_lifecycle_manager, calls configure and activate)
"""

from __future__ import annotations

import sys
from typing import Any

from . import params
from .core import NAME, Segmenter
from .node import spin, start_failed


def make_node() -> Any:
    from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn

    from danet_deploy.errors import DanetDeployError

    class LifecycleSegmentationNode(LifecycleNode):
        def __init__(self) -> None:
            super().__init__(NAME)
            for spec in params.PARAMS:
                self.declare_parameter(spec.name, spec.default, params.descriptor(spec, managed=True))
            self.segmenter: Segmenter | None = None
            self.add_on_set_parameters_callback(self._on_set)

        def _on_set(self, changes: list[Any]) -> Any:
            from rcl_interfaces.msg import SetParametersResult

            if self.segmenter is not None:
                fixed = [c.name for c in changes if c.name in params.BY_NAME and params.BY_NAME[c.name].read_only]
                if fixed:
                    return SetParametersResult(
                        successful=False,
                        reason=f"{', '.join(fixed)} can change only while "
                        "unconfigured: deactivate and clean up first, then configure again",
                    )
                return self.segmenter.on_set(changes)
            for change in changes:  # unconfigured: checked now, used at the next configure
                reason = params.refusal(change.name, change.value)
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
            return SetParametersResult(successful=True)

        def on_configure(self, state: State) -> TransitionCallbackReturn:
            values = {spec.name: self.get_parameter(spec.name).value for spec in params.PARAMS}
            reason = next((r for r in (params.refusal(k, v) for k, v in values.items()) if r), None)
            if reason:
                self.get_logger().error(f"configure refused: {reason}")
                return TransitionCallbackReturn.FAILURE
            segmenter = Segmenter(self, values)
            try:
                segmenter.load()
            except DanetDeployError as exc:
                segmenter.close()
                self.get_logger().error(f"configure failed: {exc}")
                return TransitionCallbackReturn.FAILURE
            self.segmenter = segmenter
            return TransitionCallbackReturn.SUCCESS

        def on_activate(self, state: State) -> TransitionCallbackReturn:
            assert self.segmenter is not None
            self.segmenter.start()
            return super().on_activate(state)

        def on_deactivate(self, state: State) -> TransitionCallbackReturn:
            if self.segmenter is not None:
                self.segmenter.stop()
            return super().on_deactivate(state)

        def on_cleanup(self, state: State) -> TransitionCallbackReturn:
            self.close()
            return TransitionCallbackReturn.SUCCESS

        def on_shutdown(self, state: State) -> TransitionCallbackReturn:
            self.close()
            return TransitionCallbackReturn.SUCCESS

        def close(self) -> None:
            if self.segmenter is not None:
                self.segmenter.close()
                self.segmenter = None

    return LifecycleSegmentationNode()


def main(argv: list[str] | None = None) -> int:
    import rclpy

    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = make_node()
    except ValueError as exc:
        return start_failed(exc)
    return spin(node, node.close)


if __name__ == "__main__":
    sys.exit(main())
