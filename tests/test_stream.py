"""Session.stream: pipelined frames, both policies, errors surface, no thread left behind."""

from __future__ import annotations

import queue
import threading
import time
import traceback

import numpy as np
import pytest

from danet_deploy import runtime
from danet_deploy.data.scene_video import scene_pan
from danet_deploy.errors import ConfigError, InputError
from danet_deploy.export import ExportRequest, export
from danet_deploy.runtime.stream import stream


@pytest.fixture(scope="module")
def artifact(demo_mask_artifact_64):
    return demo_mask_artifact_64


@pytest.fixture(scope="module")
def session(artifact):
    with runtime.load(artifact, threads=1) as s:
        yield s


@pytest.fixture(scope="module")
def frames():
    return scene_pan(frames=12, size=(64, 80))[0]


def _stream_threads():
    return [t for t in threading.enumerate() if t.name.startswith("danet-stream")]


def test_all_policy_keeps_every_frame_in_order_with_the_same_masks(session, frames):
    expected = [session.run(f) for f in frames]
    got = list(session.stream(iter(frames), depth=2))
    assert [i for i, _, _ in got] == list(range(len(frames)))
    for (_, mask, timings), want in zip(got, expected):
        np.testing.assert_array_equal(mask, want)
        assert timings["latency"] >= timings["engine"] > 0 and timings["dropped"] == 0
    assert not _stream_threads()


def test_latest_policy_drops_stale_frames_and_ends_on_the_newest(session, frames):
    engine = session.backend.infer_outputs

    def slow_engine(batch):
        time.sleep(0.05)
        return engine(batch)

    session.backend.infer_outputs = slow_engine  # an engine slower than the camera
    try:
        got = list(session.stream(iter(frames * 3), policy="latest"))
    finally:
        del session.backend.infer_outputs
    indices = [i for i, _, _ in got]
    assert indices == sorted(indices) and indices[-1] == len(frames) * 3 - 1
    assert got[-1][2]["dropped"] > 0 and len(got) + got[-1][2]["dropped"] == len(frames) * 3
    assert not _stream_threads()


def test_latest_policy_frames_wait_at_most_for_the_engine_call_in_progress(session, frames):
    """A fast camera and a slow engine: no frame waits behind an older preprocessed one. With a queue
    between preprocessing and the engine, one frame waited there and one in the blocked
    preprocessing thread: up to two engine periods before its own (measured through the ROS node)."""
    period = 0.2
    engine = session.backend.infer_outputs

    def slow_engine(batch):
        time.sleep(period)
        return engine(batch)

    def camera():
        end = time.monotonic() + 8 * period
        while time.monotonic() < end:
            yield frames[0]
            time.sleep(0.01)

    session.backend.infer_outputs = slow_engine
    try:
        got = list(session.stream(camera(), policy="latest"))
    finally:
        del session.backend.infer_outputs
    waits = [(t["latency"] - t["engine"] - t["post"]) / 1000 for _, _, t in got]
    assert len(got) >= 4 and max(waits) < 1.5 * period, waits
    indices = [i for i, _, _ in got]
    assert indices == sorted(indices) and len(got) + got[-1][2]["dropped"] == indices[-1] + 1
    assert not _stream_threads()


class _Counted:
    """The session as the stream sees it, recording which frames are preprocessed (a frame's id is its
    pixel value) and, when ``gated``, holding every engine call until the test releases it."""

    def __init__(self, session, gated=False):
        self._session, self._gated = session, gated
        self.prepared, self.ran = [], 0
        self.started, self.go = threading.Semaphore(0), threading.Semaphore(0)

    def __getattr__(self, name):
        return getattr(self._session, name)

    def prepare(self, images, size=None):
        self.prepared.append(int(images[0][0, 0, 0]))
        return self._session.prepare(images, size)

    def infer_outputs(self, tensor):
        if self._gated:
            self.started.release()
            assert self.go.acquire(timeout=20), "the test never released the engine"
        else:
            time.sleep(0.03)  # an engine slower than the camera
        self.ran += 1
        return self._session.infer_outputs(tensor)


class _Camera:
    """A live source the test drives: ``send`` returns once the stream's reader has taken the frame
    and come back for the next one, so the frame is in the pipeline."""

    def __init__(self):
        self._frames, self._taken = queue.Queue(), threading.Semaphore(0)

    def __iter__(self):
        while (frame := self._frames.get()) is not None:
            yield frame
            self._taken.release()

    def send(self, index):
        self._frames.put(np.full((64, 80, 3), index, np.uint8))
        assert self._taken.acquire(timeout=20), "the stream stopped reading"

    def close(self):
        self._frames.put(None)


def test_latest_policy_starts_the_engine_on_the_newest_frame_and_preprocesses_nothing_else(session):
    """Event-driven, no timing: frames arrive while the engine is busy; when it becomes free it starts on
    the newest of them, so a frame waits at most for the one engine call in progress, and only the
    frames the engine runs are preprocessed. A preprocessing stage ahead of the engine preprocessed
    every frame (CPU taken from the engine on a small host) and handed on one older than the newest."""
    counted, camera, got = _Counted(session, gated=True), _Camera(), []
    consumer = threading.Thread(target=lambda: got.extend(stream(counted, camera, policy="latest", jobs=1)))
    consumer.start()
    try:
        camera.send(0)
        assert counted.started.acquire(timeout=20)  # the engine is busy on frame 0
        for index in range(1, 6):  # arrive during its call
            camera.send(index)
        assert counted.prepared == [0]  # nothing preprocessed ahead of the engine
        counted.go.release()
        assert counted.started.acquire(timeout=20)
        assert counted.prepared == [0, 5]  # the newest frame when the engine became free
        camera.send(6)
        camera.send(7)
        counted.go.release()
        assert counted.started.acquire(timeout=20)
        assert counted.prepared == [0, 5, 7]
    finally:
        counted.go.release()
        camera.close()
        consumer.join(20)
    assert not consumer.is_alive()
    assert [i for i, _, _ in got] == [0, 5, 7] and got[-1][2]["dropped"] == 5 and counted.ran == 3
    assert not _stream_threads()


@pytest.mark.parametrize("policy", ["all", "latest"])
def test_only_the_frames_the_engine_runs_are_preprocessed(session, frames, policy):
    """A fast source and a slow engine: ``latest`` preprocesses exactly the frames the engine runs (not
    every frame read); ``all`` preprocesses and runs every frame once."""
    counted = _Counted(session)
    numbered = [np.full_like(frames[0], i) for i in range(24)]

    def camera():  # a frame every 5 ms into a 30 ms engine: each one is read before the next arrives
        for frame in numbered:
            yield frame
            time.sleep(0.005)

    got = list(stream(counted, camera(), policy=policy, jobs=1))
    assert counted.prepared == [i for i, _, _ in got] and counted.ran == len(got)
    if policy == "latest":
        assert len(got) + got[-1][2]["dropped"] == len(numbered) and got[-1][0] == len(numbered) - 1
    else:
        assert len(got) == len(numbered)
    assert not _stream_threads()


def test_latest_policy_converts_only_the_items_the_engine_takes_and_none_skips_one(session):
    """``convert`` (a ROS message -> its frame) runs where the frame is preprocessed: under ``latest``
    only for the item the engine takes, never for one dropped unseen; ``None`` skips an item (nothing
    yielded) and the stream goes on with the next."""
    counted, camera, got, converted = _Counted(session, gated=True), _Camera(), [], []

    skipped = threading.Event()

    def convert(raw):
        converted.append(int(raw[0, 0, 0]))
        if raw[0, 0, 0] == 4:
            skipped.set()
            return None
        return raw

    consumer = threading.Thread(
        target=lambda: got.extend(stream(counted, camera, policy="latest", jobs=1, convert=convert))
    )
    consumer.start()
    try:
        camera.send(0)
        assert counted.started.acquire(timeout=20)  # the engine is busy on item 0
        for index in range(1, 4):
            camera.send(index)
        assert converted == [0]  # nothing converted ahead of the engine
        counted.go.release()
        assert counted.started.acquire(timeout=20)
        assert converted == [0, 3]  # the newest item, when the engine became free
        camera.send(4)  # taken next, converted to None: skipped
        counted.go.release()
        assert skipped.wait(20)
        camera.send(5)
        assert counted.started.acquire(timeout=20)
        assert converted == [0, 3, 4, 5] and counted.prepared == [0, 3, 5]
    finally:
        counted.go.release()
        camera.close()
        consumer.join(20)
    assert not consumer.is_alive()
    assert [i for i, _, _ in got] == [0, 3, 5] and counted.ran == 3
    assert not _stream_threads()


def test_all_policy_converts_every_item_once_and_skips_the_nones(session, frames):
    items = [(i, frame) for i, frame in enumerate(frames[:5])]
    converted = []

    def convert(item):
        converted.append(item[0])
        return None if item[0] == 2 else item[1]

    got = list(session.stream(iter(items), convert=convert))
    assert converted == [0, 1, 2, 3, 4] and [i for i, _, _ in got] == [0, 1, 3, 4]
    for i, mask, timings in got:
        np.testing.assert_array_equal(mask, session.run(frames[i]))
        assert timings["pre"] > 0
    assert not _stream_threads()


@pytest.mark.parametrize("policy", ["all", "latest"])
def test_an_exception_in_convert_reaches_the_caller_with_its_own_type(session, frames, policy):
    def convert(item):
        raise KeyError("no such camera format")

    with pytest.raises(KeyError, match="no such camera format") as raised:
        list(session.stream(iter(frames[:3]), policy=policy, convert=convert))
    assert any("converting frames" in note for note in getattr(raised.value, "__notes__", []))
    assert not _stream_threads()


def test_errors_in_any_stage_reach_the_caller_and_stop_every_thread(session, frames):
    def broken_camera():
        yield frames[0]
        raise OSError("camera unplugged")

    with pytest.raises(OSError, match="camera unplugged") as raised:  # the source's own type, not RuntimeError
        list(session.stream(broken_camera()))
    assert type(raised.value) is OSError and any("reading frames" in n for n in raised.value.__notes__)
    assert any(frame.name == "broken_camera" for frame in traceback.extract_tb(raised.value.__traceback__))
    with pytest.raises(ConfigError, match="frame 1: expected a uint8 HxWx3"):
        list(session.stream([frames[0], np.zeros((8, 8), np.uint8), frames[1]]))
    engine = session.backend.infer_outputs
    session.backend.infer_outputs = lambda batch: (_ for _ in ()).throw(InputError("engine gave up"))
    try:
        with pytest.raises(InputError, match="engine gave up"):
            list(session.stream(frames))
    finally:
        session.backend.infer_outputs = engine
    time.sleep(0.2)
    assert not _stream_threads()


def test_breaking_out_early_stops_the_pipeline(session, frames):
    def endless():
        while True:
            yield from frames

    for index, _, _ in session.stream(endless()):
        if index == 3:
            break
    time.sleep(0.3)
    assert not _stream_threads()


@pytest.mark.parametrize("policy", ["all", "latest"])
def test_closing_a_stream_does_not_wait_on_a_stalled_source(session, frames, policy):
    """A live camera that stalls blocks the reader inside the caller's own source; closing the
    stream (break, Ctrl-C) waited 30 s for it. The engine threads are still waited for; the reader
    returns by itself when its source yields again."""
    release = threading.Event()

    def stalls_after_one_frame():
        yield frames[0]
        release.wait(20)
        yield frames[1]

    results = session.stream(stalls_after_one_frame(), policy=policy)
    next(results)
    start = time.perf_counter()
    results.close()
    closed_in = time.perf_counter() - start
    release.set()
    assert closed_in < 5, f"closing took {closed_in:.1f} s"
    deadline = time.monotonic() + 5
    while _stream_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _stream_threads()


def test_bad_settings(session, frames):
    with pytest.raises(ConfigError, match="policy"):
        next(session.stream(frames, policy="newest"))
    with pytest.raises(ConfigError, match="depth"):
        next(session.stream(frames, depth=0))


@pytest.mark.parametrize("policy", ["all", "latest"])
def test_parallel_engine_workers_keep_frames_in_order(session, frames, policy):
    """With jobs > 1 (OpenVINO's parallel infer requests) calls overlap, frames still come out in order."""
    engine = session.backend.infer_outputs
    active, peak, lock = [0], [0], threading.Lock()
    rng = np.random.default_rng(0)
    delays = iter(rng.uniform(0.0, 0.04, size=1000).tolist())

    def jittery_engine(batch):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            delay = next(delays)
        time.sleep(delay)  # later frames may finish first
        try:
            return engine(batch)
        finally:
            with lock:
                active[0] -= 1

    session.backend.infer_outputs = jittery_engine
    try:
        expected = {i: session.run(f) for i, f in enumerate(frames)}
        got = list(session.stream(iter(frames * 2), jobs=3, policy=policy))
    finally:
        del session.backend.infer_outputs
    indices = [i for i, _, _ in got]
    assert indices == sorted(indices) and indices[-1] == len(frames) * 2 - 1
    if policy == "all":
        assert indices == list(range(len(frames) * 2)) and peak[0] == 3
    for index, mask, _ in got:
        np.testing.assert_array_equal(mask, expected[index % len(frames)])
    assert not _stream_threads()


def test_parallel_workers_stop_cleanly_on_error_and_early_break(session, frames):
    engine = session.backend.infer_outputs
    calls = [0]

    def fails_on_fifth(batch):
        calls[0] += 1
        if calls[0] == 5:
            raise InputError("engine gave up")
        return engine(batch)

    session.backend.infer_outputs = fails_on_fifth
    try:
        with pytest.raises(InputError, match="engine gave up"):
            list(session.stream(frames * 2, jobs=3))
    finally:
        del session.backend.infer_outputs
    for _ in session.stream(frames * 4, jobs=2):
        break
    with pytest.raises(ConfigError, match="jobs must be >= 1"):
        list(session.stream(frames, jobs=0))
    time.sleep(0.2)
    assert not _stream_threads()


def test_default_jobs_follow_the_engine(session):
    assert session.backend.parallel_requests() == 1  # ONNX Runtime: one call spreads over the cores


def test_openvino_throughput_hint_streams_on_its_parallel_requests(artifact, frames):
    pytest.importorskip("openvino")
    with runtime.load(artifact, backend="openvino", hint="throughput", threads=2) as ov_session:
        jobs = ov_session.backend.parallel_requests()
        assert jobs >= 1
        expected = [ov_session.run(f) for f in frames]
        got = list(ov_session.stream(frames))
    assert [i for i, _, _ in got] == list(range(len(frames)))
    for (_, mask, _), want in zip(got, expected):
        np.testing.assert_array_equal(mask, want)
    assert not _stream_threads()


@pytest.fixture(scope="module")
def dynamic_session(tmp_path_factory):
    folder, _ = export(
        ExportRequest(
            model="danet_demo",
            target="onnx",
            input_size=(64, 64),
            dynamic=True,
            max_size=(128, 128),
            output=tmp_path_factory.mktemp("d") / "a",
        ),
        log=lambda _: None,
    )
    with runtime.load(folder, threads=1) as s:
        yield s


def test_frames_below_a_dynamic_engines_minimum_stream_like_run(dynamic_session):
    """Session.run upsamples a small image to the network's minimum; the stream refused the same frame."""
    small = np.random.default_rng(3).integers(0, 256, (12, 20, 3), np.uint8)
    got = list(dynamic_session.stream([small, small]))
    assert [i for i, _, _ in got] == [0, 1]
    np.testing.assert_array_equal(got[0][1], dynamic_session.run(small))
    assert got[0][1].shape == (12, 20)


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 16, 3), (16, 0, 3)])
def test_an_empty_frame_is_an_input_error_naming_the_frame(session, frames, shape):
    with pytest.raises(InputError, match="frame 1: empty image"):
        list(session.stream([frames[0], np.zeros(shape, np.uint8), frames[1]]))
    time.sleep(0.2)
    assert not _stream_threads()


@pytest.mark.parametrize(
    "frames_of, message",
    [
        (lambda frames: frames[0], r"got one array of shape \(64, 80, 3\): use session.run\(image\)"),
        (lambda frames: 5, "iterable of HxWx3 uint8 frames.*got int"),
        (lambda frames: None, "iterable of HxWx3 uint8 frames.*got NoneType"),
    ],
)
def test_something_that_is_not_a_stream_of_frames_is_named(session, frames, frames_of, message):
    with pytest.raises(ConfigError, match=message):
        next(session.stream(frames_of(frames)))
    assert not _stream_threads()


@pytest.mark.parametrize(
    "key, value",
    [("depth", 1.5), ("depth", float("nan")), ("depth", None), ("depth", True), ("jobs", 2.7), ("jobs", "2")],
)
def test_depth_and_jobs_must_be_whole_numbers(session, frames, key, value):
    """``int()`` turned 1.5 into 1 without a word and NaN into a bare ValueError."""
    with pytest.raises(ConfigError, match=f"stream {key} must be >= 1 \\(a whole number\\)"):
        next(session.stream(frames, **{key: value}))
