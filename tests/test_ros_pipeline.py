"""The node's work without ROS (ros2/danet_deploy_ros: pipeline and parameter checks): frames handed
over by a callback are segmented on a worker thread, newest first; bad frames and engine failures
are counted and skipped; close() leaves no thread behind."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import ros_support  # puts ros2/danet_deploy_ros on sys.path
from danet_deploy_ros import params
from danet_deploy_ros import pipeline as pipeline_module
from danet_deploy_ros.pipeline import Pipeline

from danet_deploy import runtime
from danet_deploy.errors import NonFiniteOutputError
from danet_deploy.export import ExportRequest, export

SIZE = (40, 56)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    folder, _ = export(
        ExportRequest(
            model="danet_demo", target="onnx", input_size=(64, 64), output=tmp_path_factory.mktemp("p") / "a"
        ),
        log=lambda _: None,
    )
    with runtime.load(folder, threads=1) as s:
        yield s


def image_msg(rgb: np.ndarray, stamp: int, encoding: str = "rgb8") -> SimpleNamespace:
    return SimpleNamespace(
        height=rgb.shape[0],
        width=rgb.shape[1],
        encoding=encoding,
        step=rgb.shape[1] * 3,
        is_bigendian=0,
        data=rgb.tobytes(),
        header=stamp,
    )


def collect(pipeline_args, session):
    got, logs = [], []
    done = threading.Event()

    def on_mask(msg, rgb, mask, timings):
        got.append((msg.header, mask))
        done.set()

    return Pipeline(session, on_mask, logs.append, **pipeline_args), got, logs, done


def wait_for(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not predicate():
        time.sleep(0.01)
    return predicate()


def test_masks_match_session_run_bad_frames_counted_and_nothing_left_running(session):
    before = set(threading.enumerate())
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8) for _ in range(3)]
    pipeline, got, logs, _ = collect({"max_pixels": 10_000}, session)
    for i, rgb in enumerate(frames):
        pipeline.submit(image_msg(rgb, i))
        assert wait_for(lambda i=i: len(got) == i + 1)
        pipeline.submit(SimpleNamespace(height=1, width=1, encoding="yuv422", step=2, data=b"\0\0", header=-1))
        assert wait_for(lambda i=i: sum(pipeline.snapshot()["bad"].values()) == i + 1)
    pipeline.submit(image_msg(np.zeros((200, 200, 3), np.uint8), 99))  # above max_pixels
    assert wait_for(lambda: pipeline.snapshot()["bad"].get("pixels") == 1)
    assert [h for h, _ in got] == [0, 1, 2]
    for (_, mask), rgb in zip(got, frames):
        np.testing.assert_array_equal(mask, session.run(rgb))
    snap = pipeline.snapshot()
    assert snap["bad"] == {"encoding": 3, "pixels": 1} and snap["masks"] == 3 and snap["latency_p50_ms"] > 0
    assert sum("dropping bad frames (encoding)" in line for line in logs) == 1  # logged once per cause
    pipeline.close()
    assert set(threading.enumerate()) <= before


def test_the_newest_frame_wins_and_submit_never_waits(session):
    pipeline, got, _, _ = collect({}, session)
    rgb = np.zeros((*SIZE, 3), np.uint8)
    started = time.perf_counter()
    for i in range(200):  # far faster than the engine
        pipeline.submit(image_msg(rgb, i))
    assert time.perf_counter() - started < 1.0  # the callback only hands the message over
    assert wait_for(lambda: got and got[-1][0] == 199)
    pipeline.close()
    assert len(got) < 200 and pipeline.snapshot()["dropped"] == 200 - len(got)


class _Gated:
    """A slow engine the test drives (every call waits for ``go``; ``started`` says one began) and a
    count of the messages converted, by header. ``hand_over`` submits a message and returns once the
    pipeline's reader has taken it from the mailbox: event-driven, no timing."""

    def __init__(self, session, monkeypatch):
        self.started, self.go, self.ran, self.converted = threading.Semaphore(0), threading.Semaphore(0), 0, []
        real_infer, real_convert = session.infer, pipeline_module.message_to_rgb

        def infer(tensor):
            self.started.release()
            assert self.go.acquire(timeout=20), "the test never released the engine"
            self.ran += 1
            return real_infer(tensor)

        def convert(msg, max_pixels=None):
            self.converted.append(msg.header)
            return real_convert(msg, max_pixels)

        self._taken, real_get = threading.Semaphore(0), pipeline_module.Mailbox.get

        def get(mailbox, timeout):
            msg = real_get(mailbox, timeout)
            if msg is not None:
                self._taken.release()
            return msg

        monkeypatch.setattr(session, "infer", infer)
        monkeypatch.setattr(pipeline_module, "message_to_rgb", convert)
        monkeypatch.setattr(pipeline_module.Mailbox, "get", get)  # before the pipeline's reader calls it

    def attach(self, pipeline):
        self.pipeline = pipeline

    def hand_over(self, msg):
        self.pipeline.submit(msg)
        assert self._taken.acquire(timeout=20), "the pipeline stopped reading"

    def engine_busy(self):
        assert self.started.acquire(timeout=20), "the engine never started"


def test_only_the_messages_the_engine_runs_are_converted(session, monkeypatch):
    """A camera faster than the engine: the messages the newest-frame policy drops are never converted
    (no bgr8 flip, no JPEG decode for them), and each mask keeps its own frame's header. Converting in
    the frame generator converted every message the reader took: 8 here, for 2 engine runs."""
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8) for _ in range(8)]
    want = [session.run(frames[0]), session.run(frames[-1])]
    gated = _Gated(session, monkeypatch)
    pipeline, got, _, _ = collect({}, session)
    gated.attach(pipeline)
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
    gated.hand_over(image_msg(bgr[0], 0, "bgr8"))
    gated.engine_busy()  # on frame 0
    for i in range(1, len(frames)):  # each one taken by the stream's reader while the engine is busy
        gated.hand_over(image_msg(bgr[i], i, "bgr8"))
    gated.go.release()
    gated.engine_busy()  # on the newest frame
    gated.go.release()
    assert wait_for(lambda: len(got) == 2)
    pipeline.close()
    assert gated.converted == [0, 7] and gated.ran == 2  # conversions == frames the engine ran
    assert [h for h, _ in got] == [0, 7]
    for (_, mask), expected in zip(got, want):
        np.testing.assert_array_equal(mask, expected)
    assert pipeline.snapshot()["dropped"] == 6


def test_bad_frames_are_counted_when_taken_and_not_when_dropped_unseen(session, monkeypatch):
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8) for _ in range(4)]
    want = {i: session.run(frames[i]) for i in (0, 2, 3)}
    gated = _Gated(session, monkeypatch)
    pipeline, got, logs, _ = collect({}, session)
    gated.attach(pipeline)
    gated.hand_over(image_msg(frames[0], 0))
    gated.engine_busy()
    gated.hand_over(SimpleNamespace(height=1, width=1, encoding="yuv422", step=2, data=b"\0\0", header=-1))
    gated.go.release()  # the engine is free: it takes the bad frame, which is counted and skipped
    assert wait_for(lambda: pipeline.snapshot()["bad"] == {"encoding": 1})
    gated.hand_over(SimpleNamespace(format="jpeg", data=b"not a jpeg", header=-2))
    assert wait_for(lambda: pipeline.snapshot()["bad"] == {"encoding": 1, "decode": 1})
    gated.hand_over(image_msg(frames[2], 2))
    gated.engine_busy()
    short = image_msg(frames[1], -3)
    short.data = short.data[:-1]  # wrong length: replaced by frame 3 before the engine takes it
    gated.hand_over(short)
    gated.hand_over(image_msg(frames[3], 3))
    gated.go.release()
    gated.engine_busy()
    gated.go.release()
    assert wait_for(lambda: len(got) == 3)
    pipeline.close()
    assert [h for h, _ in got] == [0, 2, 3] and gated.converted == [0, -1, -2, 2, 3]
    for header, mask in got:
        np.testing.assert_array_equal(mask, want[header])
    snap = pipeline.snapshot()
    assert snap["bad"] == {"encoding": 1, "decode": 1} and snap["dropped"] == 1 and snap["masks"] == 3
    assert [sum(f"dropping bad frames ({c})" in line for line in logs) for c in ("encoding", "decode")] == [1, 1]


def test_an_engine_failure_is_counted_and_the_stream_restarts(session, monkeypatch):
    pipeline, got, logs, _ = collect({}, session)
    calls = {"n": 0}
    real = session.infer

    def flaky(tensor):
        calls["n"] += 1
        if calls["n"] == 1:
            raise NonFiniteOutputError("NaN logits")
        return real(tensor)

    monkeypatch.setattr(session, "infer", flaky)
    rgb = np.zeros((*SIZE, 3), np.uint8)
    pipeline.submit(image_msg(rgb, 0))
    assert wait_for(lambda: pipeline.snapshot()["engine_errors"] == 1)
    started = time.monotonic()
    pipeline.submit(image_msg(rgb, 1))
    assert wait_for(lambda: got, timeout=10.0) and time.monotonic() - started < 10.0
    assert got[0][0] == 1 and any("NaN logits" in line for line in logs)
    pipeline.close()


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("alpha", 1.5, "between 0 and 1"),
        ("alpha", float("nan"), "finite"),
        ("alpha", "x", "must be a number"),
        ("qos_reliability", "sometimes", "best_effort, reliable"),
        ("artifact", "", "danet-export"),
        ("publish_overlay", 1, "true or false"),
        ("threads", -1, "between 0"),
        ("qos_depth", True, "a whole number"),
    ],
)
def test_bad_parameter_values_are_refused_with_a_reason(name, value, reason):
    assert reason in params.refusal(name, value)


def test_good_parameter_values_pass_and_the_yaml_matches_the_table():
    yaml = pytest.importorskip("yaml")
    assert params.refusal("alpha", 0) is None and params.refusal("alpha", 0.25) is None
    assert params.refusal("use_sim_time", True) is None  # not ours
    shipped = yaml.safe_load((ros_support.PACKAGE / "config" / "params.yaml").read_text())
    assert shipped["segmentation"]["ros__parameters"] == {p.name: p.default for p in params.PARAMS}


def test_the_launch_file_parses_and_starts_the_installed_executable():
    """It cannot run here (no launch wheels); at least it is valid Python naming the real executable
    and parameter file."""
    import ast

    text = (ros_support.PACKAGE / "launch" / "segmentation.launch.py").read_text()
    tree = ast.parse(text)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    assert 'executable="segmentation"' in text and '"params.yaml"' in text
    setup = (ros_support.PACKAGE / "setup.py").read_text()
    assert (
        "segmentation = {PACKAGE}.node:main" in setup and "segmentation_lifecycle = {PACKAGE}.lifecycle:main" in setup
    )


class _FakeRclpy:
    """Just enough of ``rclpy`` for ``node.spin``: ``spin`` raises what the test says, ``ok()``
    answers whether the context is still valid."""

    def __init__(self, raised: BaseException, context_ok: bool) -> None:
        self.raised, self.context_ok, self.shutdowns = raised, context_ok, 0

    def spin(self, node) -> None:
        raise self.raised

    def ok(self) -> bool:
        return self.context_ok

    def try_shutdown(self) -> None:
        self.shutdowns += 1


class _ExternalShutdown(Exception):
    pass


@pytest.mark.parametrize("context_ok", [False, True])
def test_spin_treats_an_error_after_shutdown_as_the_shutdown_and_reraises_one_before(monkeypatch, context_ok):
    """A SIGINT landing in a finalizer loses its KeyboardInterrupt, and the executor's next wait
    raises RCLError on the context rclpy's handler already shut down: exit 0. The same error while
    the context is valid is a real failure and propagates; either way the node is closed."""
    import sys
    import types

    from danet_deploy_ros import node as node_module

    fake = _FakeRclpy(RuntimeError("failed to initialize wait set: the given context is not valid"), context_ok)
    executors = types.ModuleType("rclpy.executors")
    executors.ExternalShutdownException = _ExternalShutdown  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rclpy", fake)
    monkeypatch.setitem(sys.modules, "rclpy.executors", executors)
    closed, destroyed = [], []
    ros_node = SimpleNamespace(destroy_node=lambda: destroyed.append(True))
    if context_ok:
        with pytest.raises(RuntimeError, match="context is not valid"):
            node_module.spin(ros_node, lambda: closed.append(True))
    else:
        assert node_module.spin(ros_node, lambda: closed.append(True)) == node_module.EXIT_OK
    assert closed == [True] and destroyed == [True] and fake.shutdowns == 1


def test_the_ros_drivers_refuse_to_run_with_a_network_interface_besides_loopback(monkeypatch):
    """The test and benchmark drivers publish over DDS: started by hand outside the sandbox, their
    multicast discovery would leave the machine, so they stop first, naming the interfaces."""
    from danet_deploy_ros import sandbox

    monkeypatch.setattr(sandbox, "network_interfaces", lambda: ["lo", "eth0"])
    with pytest.raises(SystemExit, match=r"outside a private network namespace \(interfaces: eth0\)"):
        sandbox.require_isolated()
    monkeypatch.setattr(sandbox, "network_interfaces", lambda: ["lo"])
    sandbox.require_isolated()


def test_inside_the_sandbox_only_loopback_is_seen():
    import sys

    from danet_deploy_ros import sandbox

    reason = sandbox.unavailable()
    if reason:
        pytest.skip(reason)
    code = "from danet_deploy_ros import sandbox; print(sandbox.network_interfaces()); sandbox.require_isolated()"
    done = sandbox.run_isolated([sys.executable, "-c", code], env={"PYTHONPATH": str(ros_support.PACKAGE)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['lo']"
