"""Pipelined inference over a stream of frames: pre-processing, the engine and post-processing overlap.

A robot's loop that calls ``session.run(frame)`` runs preprocess -> engine -> postprocess strictly
in sequence, so the host work of every frame adds to its latency and divides the frame rate.
:func:`stream` runs the three stages on their own threads joined by bounded queues (the engine
libraries release the GIL while they compute), so frame i+1 is read and preprocessed and frame
i-1 is post-processed while the engine runs frame i:

    source --(reader)--> frames --(preprocess)--> tensors --(engine x jobs)--> outputs --(caller: post)--> yield

The engine stage runs ``jobs`` workers (default: the backend's ``parallel_requests()``: OpenVINO's
optimal number of infer requests, e.g. 2 under the throughput hint; 1 for ONNX Runtime, whose one
call already spreads over every core), so an engine with parallel requests keeps them all busy;
the caller still receives frames in order.

Two policies for what happens when the source is faster than the engine:
    * ``"all"`` (files): every frame is processed, in order; the reader waits (bounded queues).
      Preprocessing runs on its own thread, ahead of the engine.
    * ``"latest"`` (live cameras): the reader never waits; a frame not yet picked up when a newer
      one arrives is dropped (counted), so the engine always works on the newest frame and the
      latency does not grow behind a backlog. There is no preprocessing stage ahead of the engine:
      an engine worker that becomes free takes the newest raw frame and preprocesses it itself,
      then runs it. Why: a stage ahead preprocessed every frame the camera sent, most of them then
      dropped, which took CPU from the engine on a small host, and the tensor it left waiting was
      older than the newest frame by the time the engine took it (a mask up to 1.33 engine periods
      stale through the ROS 2 node, at 30 fps into a ~200 ms engine on 2 cores). Now no work is
      done on a dropped frame, and a frame waits at most for the engine call in progress; the
      price is the few milliseconds of preprocessing no longer overlapping the engine.

    source --(reader)--> newest frame --(engine x jobs: preprocess, engine)--> outputs --(caller: post)--> yield

A frame source whose items are not images yet (ROS messages: a JPEG to decode, a bgr8 buffer to
flip) passes ``convert``, which turns one item into the HxWx3 frame at the start of that frame's
preprocessing: under ``"latest"`` in the engine worker that is about to run it, so a message the
policy drops is never converted (a 30 fps bgr8 camera no longer costs a 5.8 ms flip per dropped
frame, nor a compressed one a JPEG decode). ``convert`` returning ``None`` skips the item (a bad
frame the caller has counted): nothing is yielded for it and the stream goes on.

An exception in any stage stops the others and is raised in the caller; closing the generator
early (``break``) stops and joins every thread. Nothing is left running either way.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, DanetDeployError, InputError
from ..outputs import LOGITS, MASK
from ..util.counts import is_count
from .preprocess import image_hw, mask_at_size, resize_mask

POLICIES = ("all", "latest")
_END = object()
_POLL_S = 0.05
_READER_NAME = "danet-stream-reader"
_READER_JOIN_S = 0.5  # the reader only waits on the caller's source; see the cleanup in stream()


@dataclass
class _Item:
    index: int
    image: Any  # the source's item; after ``convert`` (if any) the HxWx3 frame
    read_at: float
    seq: int = 0  # order in which the engine took the frames (``latest`` drops some indices)
    tensor: np.ndarray | None = None
    outputs: dict[str, np.ndarray] | None = None
    pre_ms: float = 0.0
    engine_ms: float = 0.0
    skipped: bool = False  # ``convert`` returned None: no engine call, nothing yielded


READING = "reading frames"  # the stage that iterates the caller's frame source
CONVERTING = "converting frames"  # the caller's ``convert``
_CALLERS_STAGES = (READING, CONVERTING)  # their exceptions reach the caller with their own type


class _Failure:
    """An exception raised in a stage, carried downstream to the caller."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        self.stage, self.exc = stage, exc


class _LatestSlot:
    """A one-frame mailbox: a new frame replaces one not taken yet (counted as dropped). The end of
    the stream (or a failure) is kept apart, so it never displaces the last frame."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self._final: Any = None
        self.dropped = 0

    def put(self, item: Any, stop: threading.Event) -> bool:
        with self._cond:
            if item is _END or isinstance(item, _Failure):
                self._final = item
            else:
                if self._full:
                    self.dropped += 1
                self._item, self._full = item, True
            self._cond.notify()
        return True

    def get(self, stop: threading.Event) -> Any:
        with self._cond:
            while not self._full and self._final is None:
                if stop.is_set():
                    return _END
                self._cond.wait(_POLL_S)
            if self._full:
                item, self._item, self._full = self._item, None, False
                return item
            return self._final


class _Numbered:
    """The engine stage's source: numbers frames in the order the engine takes them (under one lock,
    so several engine workers cannot swap numbers), so the caller's in-order hand-back has no gap
    where the latest policy replaced a frame before the engine took it."""

    def __init__(self, source: Any) -> None:
        self.source, self._lock, self._next = source, threading.Lock(), 0

    def get(self, stop: threading.Event) -> Any:
        with self._lock:
            item = self.source.get(stop)
            if isinstance(item, _Item):
                item.seq, self._next = self._next, self._next + 1
            return item

    def put(self, item: Any, stop: threading.Event) -> bool:
        return self.source.put(item, stop)


class _Bounded:
    """A bounded queue whose put/get give up when the pipeline is stopping (no thread blocks forever)."""

    def __init__(self, depth: int) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.dropped = 0

    def put(self, item: Any, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                self._q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self, stop: threading.Event) -> Any:
        while True:
            try:
                return self._q.get(timeout=_POLL_S)
            except queue.Empty:
                if stop.is_set():
                    return _END


def stream(
    session: Any,
    frames: Iterable[Any],
    depth: int = 2,
    policy: str = "all",
    jobs: int | None = None,
    convert: Callable[[Any], np.ndarray | None] | None = None,
) -> Iterator[tuple[int, np.ndarray, dict[str, float]]]:
    """Yield ``(frame_index, mask, timings)`` for each processed frame; see the module docstring.

    Args:
        session: a :class:`~danet_deploy.runtime.Session`.
        frames: uint8 HxWx3 RGB frames (a list, a generator, a camera reader ...), or with
            ``convert`` any items it turns into such frames.
        depth: frames in flight between two stages (bounded memory: at most ~3 x depth frames).
        policy: ``"all"`` keeps every frame; ``"latest"`` drops stale frames (live cameras).
        jobs: engine calls in flight (default: ``session.backend.parallel_requests()``).
        convert: called once per item the engine takes, on the thread that preprocesses it
            (never on an item ``"latest"`` dropped): the item -> its uint8 HxWx3 frame, or ``None``
            to skip it (not yielded; ``frame_index`` still counts it). Its exceptions reach the
            caller with their own type. Called from several threads at once when ``jobs > 1``.
    Timings (ms): ``pre`` (with ``convert``), ``engine``, ``post``, ``latency`` (frame read -> mask ready) and
    ``dropped`` (frames dropped so far; ``"latest"`` only).
    """
    if policy not in POLICIES:
        raise ConfigError(f"stream policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    depth = _count(depth, "depth")
    frames = _frame_iterator(frames)
    plan = _Plan(session, convert)
    jobs = _count(jobs, "jobs") if jobs is not None else plan.jobs
    stop = threading.Event()
    latest = policy == "latest"
    raw: _LatestSlot | _Bounded = _LatestSlot() if latest else _Bounded(depth)
    outputs = _Bounded(depth + jobs)
    pre_steps = [(CONVERTING, plan.convert)] if convert is not None else []
    pre_steps.append(("preprocessing", plan.pre))
    engine_step = ("inference", plan.engine)
    tensors: _Bounded | None = None
    if latest:  # the engine workers take the newest raw frame and preprocess it themselves
        engine_steps = [*pre_steps, engine_step]
    else:  # a preprocessing thread keeps a bounded queue of tensors ahead of the engine
        tensors, engine_steps = _Bounded(depth), [engine_step]
    running = {"preprocessing": 1, "inference": jobs}  # workers per stage still reading their source
    running_lock = threading.Lock()

    def reader() -> None:
        try:
            for index, image in enumerate(frames):
                if stop.is_set():
                    return
                if not raw.put(_Item(index, image, time.perf_counter()), stop):
                    return
            raw.put(_END, stop)
        except BaseException as exc:
            raw.put(_Failure(READING, exc), stop)

    def stage(group: str, source: Any, sink: _Bounded, steps: list[tuple[str, Any]]) -> None:
        """One worker of ``group``: each item from ``source`` through ``steps`` (name, work) into ``sink``."""
        while True:
            item = source.get(stop)
            if item is _END:  # pass it back for any sibling worker; the last one to stop passes it on
                with running_lock:
                    running[group] -= 1
                    last = running[group] == 0
                if not last:
                    source.put(_END, stop)
                else:
                    sink.put(_END, stop)
                return
            if isinstance(item, _Failure):
                sink.put(item, stop)
                return
            for name, work in steps:
                if item.skipped:
                    break
                try:
                    work(item)
                except BaseException as exc:
                    sink.put(_Failure(name, exc), stop)
                    return
            if not sink.put(item, stop):
                return

    threads = [threading.Thread(target=reader, name=_READER_NAME, daemon=True)]
    if tensors is not None:
        threads.append(
            threading.Thread(
                target=stage, args=("preprocessing", raw, tensors, pre_steps), name="danet-stream-pre", daemon=True
            )
        )
    numbered = _Numbered(raw if tensors is None else tensors)
    threads += [
        threading.Thread(
            target=stage,
            args=("inference", numbered, outputs, engine_steps),
            name=f"danet-stream-engine-{k}",
            daemon=True,
        )
        for k in range(jobs)
    ]
    for thread in threads:
        thread.start()
    waiting: dict[int, _Item] = {}  # finished out of order (jobs > 1), held until their turn
    next_seq = 0
    try:
        while True:
            if next_seq in waiting:
                item = waiting.pop(next_seq)
            else:
                item = outputs.get(stop)
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    # the frame source's own exception (a camera's OSError, a decoder's error) keeps its
                    # type and traceback, so callers catch what their source raises; a note names the stage
                    if isinstance(item.exc, DanetDeployError) or item.stage in _CALLERS_STAGES:
                        if hasattr(item.exc, "add_note"):  # Python 3.11+
                            item.exc.add_note(f"raised in Session.stream while {item.stage}")
                        raise item.exc
                    raise RuntimeError(f"stream failed while {item.stage}: {item.exc!r}") from item.exc
                if item.seq != next_seq:
                    waiting[item.seq] = item
                    continue
            next_seq += 1
            if item.skipped:
                continue
            start = time.perf_counter()
            mask = plan.post(item)
            done = time.perf_counter()
            timings = {
                "pre": item.pre_ms,
                "engine": item.engine_ms,
                "post": (done - start) * 1000.0,
                "latency": (done - item.read_at) * 1000.0,
                "dropped": float(raw.dropped),
            }
            yield item.index, mask, timings
    finally:
        stop.set()
        for thread in threads:
            # The engine and preprocessing threads finish the call in progress before the session can
            # be closed, so they are waited for. The reader may be blocked inside the caller's own
            # source (a stalled camera): it touches nothing of the session and returns at its next
            # frame, so closing the stream does not wait 30 s on it.
            thread.join(timeout=_READER_JOIN_S if thread.name == _READER_NAME else 30)


def _count(value: Any, name: str) -> int:
    """A whole number >= 1. Why: ``int()`` truncated 1.5 to 1 silently and raised a bare
    ValueError for NaN."""
    if not is_count(value):
        raise ConfigError(f"stream {name} must be >= 1 (a whole number), got {value!r}")
    return int(value)


def _frame_iterator(frames: Any) -> Iterator[Any]:
    """``iter(frames)``, refusing what is not a stream of frames. Why: one HxWx3 image iterated as
    its rows (each refused as a "frame"), and a non-iterable failed as a RuntimeError from the
    reader thread."""
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ConfigError(
            f"stream() takes frames one after another (a list, a generator, a camera reader or an "
            f"NxHxWx3 array), got one array of shape {frames.shape}: use session.run(image) for one "
            "image, or session.stream([image])"
        )
    try:
        return iter(frames)
    except TypeError:
        raise ConfigError(
            f"stream() takes an iterable of HxWx3 uint8 frames (a list, a generator, a camera "
            f"reader), got {type(frames).__name__}"
        ) from None


class _Plan:
    """How each stage treats a frame for this session: engine input size, outputs, post-processing."""

    def __init__(self, session: Any, convert: Callable[[Any], np.ndarray | None] | None = None) -> None:
        self.session, self._convert = session, convert
        spec = session.input_spec
        self.size = spec.static_hw
        self.batch = spec.static_batch or 1
        self.use_mask = MASK in session.outputs
        if not self.use_mask and LOGITS not in session.outputs:
            raise ConfigError(f"streaming needs a mask or full logits; this artifact emits {session.outputs}")
        backend = getattr(session, "backend", None)
        self.jobs = max(1, int(backend.parallel_requests())) if backend is not None else 1

    def convert(self, item: _Item) -> None:
        """The caller's item -> its frame (timed as part of ``pre``), or marks it skipped."""
        assert self._convert is not None
        start = time.perf_counter()
        image = self._convert(item.image)
        item.pre_ms = (time.perf_counter() - start) * 1000.0
        if image is None:
            item.skipped, item.image = True, None
        else:
            item.image = image

    def pre(self, item: _Item) -> None:
        start = time.perf_counter() - item.pre_ms / 1000.0  # counts the conversion, if any
        image = item.image
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ConfigError(
                f"frame {item.index}: expected a uint8 HxWx3 RGB array, got "
                f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
            )
        if image.shape[0] < 1 or image.shape[1] < 1:  # the resize below divided by zero
            raise InputError(f"frame {item.index}: empty image of shape {image.shape}; skip empty frames")
        # a dynamic engine takes a small frame upsampled to the network's minimum, as Session.run does
        hw = self.size or self.session._runnable_hw(image.shape[:2])
        tensor = self.session.prepare([image], hw)  # float NCHW, or an --accept artifact's uint8 image
        # the engine stage calls the session, which checks the tensor once (shape, dtype, NaN)
        item.tensor = np.repeat(tensor, self.batch, axis=0) if self.batch > 1 else tensor
        item.pre_ms = (time.perf_counter() - start) * 1000.0

    def engine(self, item: _Item) -> None:
        start = time.perf_counter()
        session = self.session  # its checks apply: closed session, NaN/Inf outputs
        item.outputs = (
            session.infer_outputs(item.tensor)
            if self.use_mask or len(session.outputs) > 1
            else {LOGITS: session.infer(item.tensor)}
        )
        item.tensor = None
        item.engine_ms = (time.perf_counter() - start) * 1000.0

    def post(self, item: _Item) -> np.ndarray:
        assert item.outputs is not None and item.image is not None
        size = image_hw(item.image)
        if self.use_mask:
            return resize_mask(item.outputs[MASK][0], size)
        return mask_at_size(item.outputs[LOGITS][0], size)
