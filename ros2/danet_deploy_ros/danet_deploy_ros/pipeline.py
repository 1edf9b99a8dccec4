"""Frames from subscription callbacks -> masks, off the executor thread, newest frame first.

The callback only drops the message into a one-slot mailbox (a newer one replaces it, counted as
dropped) and returns at once. One worker thread runs ``Session.stream(messages, policy="latest",
convert=...)`` over a generator that takes the raw messages from the mailbox; the stream drops
stale ones itself and converts (JPEG/PNG decoding, bgr8 flip, 16-bit scaling, padded rows) only
the message its engine worker takes next, right before preprocessing it. Why: converting in the
generator did that work for every message the camera sent, most of them then dropped unseen (a
5.8 ms flip per bgr8 512x512 message, a full decode per JPEG), CPU taken from the engine on a
small host. A bad frame is found when it is taken: counted by cause, logged once per cause and
skipped (one the newest-frame policy drops before the engine takes it is never looked at, so
never counted); an engine failure on one frame is counted and the stream restarts, so the node
never dies on input. ``close()`` ends the generator, which ends the stream and joins every
thread it started.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from danet_deploy.errors import DanetDeployError, FrameError
from danet_deploy.runtime.ros_images import message_to_rgb
from danet_deploy.runtime.stream import stream

#: result callback: (input message, RGB frame, mask, timings in ms)
OnMask = Callable[[Any, np.ndarray, np.ndarray, dict[str, float]], None]
WINDOW = 300  # frames kept for fps and latency percentiles
_POLL_S = 0.05


class _Watched:
    """The session as the stream sees it, setting ``failed`` when an engine call raises, so the
    frame generator stops waiting for messages and the stream can join its reader at once."""

    def __init__(self, session: Any, failed: threading.Event) -> None:
        self._session, self._failed = session, failed

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._session, name)
        if name not in ("infer", "infer_outputs"):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except BaseException:
                self._failed.set()
                raise

        return call


class Mailbox:
    """One message; a newer one replaces it (counted). ``close()`` wakes the reader for good."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False
        self.replaced = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._cond.notify()

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, timeout: float) -> Any:
        """The next message, or None when none came within ``timeout`` seconds or the box is closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Stats:
    """Counters and a window of recent frames, read by the diagnostics timer (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bad: Counter[str] = Counter()
        self.engine_errors = 0
        self.masks = 0
        self.stream_dropped = 0
        self.done_at: deque[float] = deque(maxlen=WINDOW)
        self.latency_ms: deque[float] = deque(maxlen=WINDOW)

    def frame(self, latency_ms: float, dropped: int) -> None:
        with self.lock:
            self.masks += 1
            self.done_at.append(time.monotonic())
            self.latency_ms.append(latency_ms)
            self.stream_dropped = dropped

    def snapshot(self, mailbox_replaced: int) -> dict[str, Any]:
        with self.lock:
            stamps, lat = list(self.done_at), list(self.latency_ms)
            fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
            return {
                "masks": self.masks,
                "fps": fps,
                "latency_p50_ms": float(np.percentile(lat, 50)) if lat else None,
                "latency_p99_ms": float(np.percentile(lat, 99)) if lat else None,
                "dropped": mailbox_replaced + self.stream_dropped,
                "bad": dict(self.bad),
                "engine_errors": self.engine_errors,
            }


class Pipeline:
    """``submit(msg)`` from any thread; ``on_mask`` is called on the worker thread per mask."""

    def __init__(
        self, session: Any, on_mask: OnMask, log: Callable[[str], None], max_pixels: int | None = None
    ) -> None:
        self.session, self.on_mask, self.log, self.max_pixels = session, on_mask, log, max_pixels
        self.mailbox = Mailbox()
        self.stats = Stats()
        self._logged: set[str] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name="danet-ros-worker", daemon=True)
        self._thread.start()

    def submit(self, msg: Any) -> None:
        self.mailbox.put(msg)

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot(self.mailbox.replaced)

    def _messages(self, failed: threading.Event) -> Iterator[tuple[int, Any]]:
        """``(index, message)`` from the mailbox until it closes, or until the engine failed (the
        stream then stops and joins its reader, which is waiting here: it must not wait long).
        Nothing is converted here: the stream converts only what its engine takes."""
        index = 0
        while not self.mailbox.closed and not failed.is_set():
            msg = self.mailbox.get(_POLL_S)
            if msg is None:
                continue
            yield index, msg
            index += 1

    def _converter(
        self, kept: dict[int, tuple[Any, np.ndarray]], failed: threading.Event
    ) -> Callable[[tuple[int, Any]], np.ndarray | None]:
        """The stream's ``convert``: runs in the engine worker for the message it is about to run.
        A converted frame always reaches ``on_mask`` (or fails the stream, which then starts over
        with a new ``kept``), so ``kept`` holds only frames in flight: never a bad or dropped one."""

        def convert(entry: tuple[int, Any]) -> np.ndarray | None:
            index, msg = entry
            try:
                rgb = message_to_rgb(msg, self.max_pixels)
            except FrameError as exc:
                self._bad(exc.cause, str(exc))
                return None  # skipped by the stream
            except BaseException:
                failed.set()  # an unexpected error fails the stream: the generator must stop waiting
                raise
            kept[index] = (msg, rgb)  # one dict store: atomic, read back by the worker thread
            return self.session.from_rgb(rgb)  # a bgr8 artifact takes the camera's BGR order

        return convert

    def _bad(self, cause: str, text: str) -> None:
        """Count a bad frame and log its cause the first time (from any engine worker thread)."""
        with self.stats.lock:
            self.stats.bad[cause] += 1
            first = cause not in self._logged
            self._logged.add(cause)
        if first:  # once per cause; the count is in the diagnostics
            self.log(f"dropping bad frames ({cause}): {text}; further ones are counted in /diagnostics")

    def _work(self) -> None:
        while not self._stopping.is_set():
            kept: dict[int, tuple[Any, np.ndarray]] = {}
            failed = threading.Event()
            try:
                masks = stream(
                    _Watched(self.session, failed),
                    self._messages(failed),
                    depth=1,
                    policy="latest",
                    convert=self._converter(kept, failed),
                )
                for index, mask, timings in masks:
                    try:
                        msg, rgb = kept.pop(index)
                        self.stats.frame(timings["latency"], int(timings["dropped"]))
                        self.on_mask(msg, rgb, mask, timings)
                    except BaseException:
                        failed.set()  # before the stream is closed and joins its reader
                        raise
                return  # the mailbox closed: the stream ended
            except DanetDeployError as exc:  # an engine failure (NaN output, ...) on one frame
                with self.stats.lock:
                    self.stats.engine_errors += 1
                self._bad("engine", f"{type(exc).__name__}: {exc}")
            except Exception as exc:
                if self._stopping.is_set():
                    return
                with self.stats.lock:
                    self.stats.engine_errors += 1
                self._bad("internal", repr(exc))
                time.sleep(0.1)

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking frames, finish, and join the worker (and with it the stream's threads)."""
        self._stopping.set()
        self.mailbox.close()
        self._thread.join(timeout)
