"""What turns a dataset's images into masks for ``danet-eval``: a local Session or a Triton server.

Each predictor takes an iterable of ``(index, image)`` and yields ``(index, mask)`` at the image's
own size, in order, with decoding, preprocessing and the engine overlapping:

* whole images on a local session go through :meth:`Session.stream` (reader, preprocessing and
  engine threads; as many engine calls in flight as the backend serves);
* a protocol the stream does not express (sliding windows, or a resize a dynamic engine must be
  fed) runs :meth:`Session.run` per image while a reader thread decodes the next ones;
* ``--server`` sends each image to a running ``danet-serve`` over HTTP or gRPC with several
  requests in flight (one tritonclient connection per worker thread).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..eval_protocol import TestProtocol
from ..runtime.preprocess import mask_at_size, resize_image

Items = Iterable[tuple[int, np.ndarray]]


def prefetched(items: Items, depth: int = 4) -> Iterator[tuple[int, np.ndarray]]:
    """``items`` read on a background thread, at most ``depth`` ahead; an error is raised here."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def reader() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(end)
        except BaseException as exc:
            q.put(exc)

    thread = threading.Thread(target=reader, name="danet-eval-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class SessionPredictor:
    """Masks from a local :class:`~danet_deploy.runtime.Session` under a :class:`TestProtocol`."""

    def __init__(self, session: Any, protocol: TestProtocol, jobs: int | None = None) -> None:
        self.session, self.protocol, self.jobs = session, protocol, jobs
        static = session.input_spec.static_hw
        if protocol.mode == "slide" and static is not None and tuple(protocol.crop or ()) != static:
            raise ConfigError(
                f"--crop {protocol.crop} differs from the engine's fixed input {static[0]}x{static[1]}; "
                f"use --crop {static[0]}x{static[1]} or an artifact exported at the crop size"
            )
        self.notes: list[str] = []
        if static is not None and protocol.mode == "whole" and protocol.resize is not None:
            self.notes.append(
                f"the engine's fixed input {static[0]}x{static[1]} replaces the protocol's resize "
                f"{protocol.resize[0]}x{protocol.resize[1]} (logits are resized back to each label)"
            )

    @property
    def streams(self) -> bool:
        """Whole images that need no resize of our own (a fixed-size engine resizes itself) go
        through ``Session.stream``; the rest take the exact per-image path."""
        return self.protocol.mode == "whole" and (
            self.session.input_spec.static_hw is not None or self.protocol.resize is None
        )

    def predict(self, items: Items) -> Iterator[tuple[int, np.ndarray]]:
        if not self.streams:
            for index, image in prefetched(items):
                yield self._one(index, image)
            return
        indices: list[int] = []

        def frames() -> Iterator[np.ndarray]:
            for index, image in items:
                indices.append(index)  # the stream's own reader thread runs this generator
                yield image

        for position, mask, _ in self.session.stream(frames(), depth=2, jobs=self.jobs):
            yield indices[position], mask

    def _one(self, index: int, image: np.ndarray) -> tuple[int, np.ndarray]:
        """Exact protocol for one image: resize, whole or sliding windows, logits back to its size."""
        size = tuple(image.shape[:2])
        scaled = self.protocol.scaled_size(*size)
        fed = image if scaled == size else resize_image(image, scaled)
        if self.protocol.mode == "slide":
            _, logits = self.session.run(fed, return_logits=True, tile=self.protocol.crop, stride=self.protocol.stride)
        else:
            _, logits = self.session.run(fed, return_logits=True)
        # back to the label's size as the release's test does (mmseg resizes with the model's align_corners)
        return index, mask_at_size(logits, size, align_corners=self.protocol.align_corners)  # type: ignore[arg-type]


class ServerPredictor:
    """Masks from a running ``danet-serve`` (Triton): ``in_flight`` requests at once, results in order."""

    def __init__(
        self,
        url: str,
        protocol: str,
        in_flight: int = 4,
        model_name: str = "danet",
        timeout_s: float = 120.0,
        ready_s: float = 30.0,
    ) -> None:
        from ..serve.client import SegmentationClient

        self.in_flight = max(1, int(in_flight))
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

        def make() -> Any:
            return SegmentationClient(url, protocol, model_name=model_name, timeout_s=timeout_s)

        self._make: Callable[[], Any] = make
        probe = make()
        probe.wait_ready(ready_s)
        self.url = f"{probe.protocol}://{probe.url}"
        probe.close()
        self.notes = [
            (
                f"images sent to {self.url} ({self.in_flight} requests in flight); the server runs its "
                "engine whole-image at its input size"
            )
        ]

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._make()
            with self._lock:
                self._clients.append(client)
        return client

    def predict(self, items: Items) -> Iterator[tuple[int, np.ndarray]]:
        pending: list[tuple[int, Future[np.ndarray]]] = []
        with ThreadPoolExecutor(self.in_flight, thread_name_prefix="danet-eval-client") as pool:
            try:
                for index, image in prefetched(items, depth=self.in_flight * 2):
                    pending.append((index, pool.submit(lambda img: self._client().segment(img), image)))
                    while len(pending) >= self.in_flight * 2:
                        idx, future = pending.pop(0)
                        yield idx, future.result()
                for idx, future in pending:
                    yield idx, future.result()
            finally:
                for _, future in pending:
                    future.cancel()

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
