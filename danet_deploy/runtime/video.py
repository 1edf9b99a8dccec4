"""Video files and cameras in, overlay video and per-frame records out (PyAV: FFmpeg's libraries).

PyAV is the library here because its wheels bundle FFmpeg (H.264 encode and decode, V4L2 capture)
and install cleanly beside the pinned numpy/torch stack; OpenCV's headless wheel would add a
second copy of FFmpeg and a numpy constraint for the same job. It is imported only when a video
function is called (``pip install 'danet-deploy[video]'``), so the runtime stays light.

:func:`segment_video` is the whole job behind ``danet-run --video/--camera``: frames stream
through :meth:`Session.stream` (pre-processing, engine and post-processing overlap), each mask is
blended over its frame into ``overlay.mp4``, one JSON line per frame goes to ``frames.jsonl``
(index, timestamp, latency and stage times, class pixel counts) and ``summary.json`` holds the
totals (frames, dropped, p50/p99 latency, FPS).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, InputError, summarize_exception
from ..util.files import atomic_output, not_a_file_reason
from .preprocess import image_hw, legend, overlay, resize_image


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise BackendUnavailableError(
            "video and camera input need PyAV: pip install 'danet-deploy[video]' (or pip install av)"
        ) from exc
    return av


class Frames(Protocol):
    """What ``segment_video`` reads from a source: a video/camera ``FrameSource`` or a replayed
    bag both fit, so the one pipeline serves every kind of input."""

    name: str
    live: bool
    fps: float
    timestamps: dict[int, float]

    def __iter__(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


class FrameSource:
    """RGB uint8 frames of a video file or camera, with their timestamps (seconds).

    ``max_pixels`` bounds a frame's size, checked from the stream's header and again per frame
    before its RGB conversion: a file that declares huge frames must not exhaust the memory of the
    pipeline that holds several of them (the same limit ``read_image`` puts on images).
    """

    def __init__(self, container: Any, name: str, live: bool, max_pixels: int | None = None) -> None:
        self.container, self.name, self.live, self.max_pixels = container, name, live, max_pixels
        streams = container.streams.video
        if not streams:
            container.close()
            raise InputError(f"{name} has no video stream")
        self.stream = streams[0]
        try:
            self._check_pixels(self.stream.codec_context.width or 0, self.stream.codec_context.height or 0)
        except InputError:
            container.close()
            raise
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self.frame_count = int(self.stream.frames or 0)  # 0 when the container does not say
        self.timestamps: dict[int, float] = {}

    def _check_pixels(self, width: int, height: int) -> None:
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise InputError(
                f"{self.name} has {width}x{height} frames = {width * height / 1e6:.3g} megapixels, above "
                f"the {self.max_pixels / 1e6:g} MP limit (each frame takes "
                f"{width * height * 3 / 2**30:.2g} GiB as RGB, several are in flight); downscale the "
                "video first, or raise the limit (danet-run --max-pixels, open_video(max_pixels=...))"
            )

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for index, frame in enumerate(self.container.decode(self.stream)):
                self._check_pixels(frame.width, frame.height)
                self.timestamps[index] = float(frame.time) if frame.time is not None else index / self.fps
                yield frame.to_ndarray(format="rgb24")
        except Exception as exc:
            if isinstance(exc, (GeneratorExit, KeyboardInterrupt, InputError)):
                raise
            raise InputError(
                f"{self.name}: decoding failed after {len(self.timestamps)} frame(s): {summarize_exception(exc)}"
            ) from exc

    def close(self) -> None:
        self.container.close()


def open_video(path: str | Path, max_pixels: int | None = None) -> FrameSource:
    """A video file (anything FFmpeg decodes: mp4, mkv, avi, webm ...); frames above ``max_pixels`` are refused."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {str(path)!r} {not_a_file_reason(path)}")
    try:
        container = av.open(str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{path} is not a readable video: {summarize_exception(exc)}") from exc
    return FrameSource(container, str(path), live=False, max_pixels=max_pixels)


def open_camera(
    device: str | int, size: tuple[int, int] | None = None, fps: int | None = None, max_pixels: int | None = None
) -> FrameSource:
    """A live camera: an index ``N`` (``/dev/videoN`` through V4L2 on Linux) or a device path."""
    av = _av()
    if sys.platform != "linux":
        raise ConfigError(
            "--camera uses V4L2 and works on Linux (Jetson, x86 robots); elsewhere pass a video "
            "file, or read frames yourself and call Session.stream"
        )
    path = f"/dev/video{int(device)}" if str(device).isdigit() else str(device)
    if not os.path.exists(path):
        raise InputError(
            f"camera {path} does not exist (no such V4L2 device); list cameras with v4l2-ctl --list-devices"
        )
    options = {}
    if size:
        options["video_size"] = f"{size[1]}x{size[0]}"
    if fps:
        options["framerate"] = str(fps)
    try:
        container = av.open(path, format="v4l2", options=options)
    except Exception as exc:
        raise InputError(
            f"cannot open camera {path}: {summarize_exception(exc)} (busy, or no permission? add "
            "your user to the 'video' group)"
        ) from exc
    return FrameSource(container, path, live=True, max_pixels=max_pixels)


class VideoWriter:
    """H.264 (or MPEG-4 where FFmpeg lacks libx264) MP4 writer; the file appears whole when closed."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        av = _av()
        self.path = Path(path)
        self._atomic = atomic_output(self.path)
        tmp = self._atomic.__enter__()
        self.container = av.open(str(tmp), mode="w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream(codec, rate=rate)
        self.stream.height, self.stream.width = (size[0] + 1) // 2 * 2, (size[1] + 1) // 2 * 2  # yuv420p: even
        self.stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self.stream.options = {"crf": "23", "preset": "veryfast"}
        self.codec = codec

    def write(self, rgb: np.ndarray) -> None:
        av = _av()
        h, w = self.stream.height, self.stream.width
        if rgb.shape[:2] != (h, w):
            rgb = np.pad(rgb, ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self, ok: bool = True) -> None:
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()
            if ok:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


OVERLAY_VIDEO, FRAMES_JSONL, SUMMARY_JSON = "overlay.mp4", "frames.jsonl", "summary.json"


def video_output_names(write_video: bool = True) -> list[str]:
    """The files :func:`segment_video` writes into its output folder (checked before a run starts)."""
    return ([OVERLAY_VIDEO] if write_video else []) + [FRAMES_JSONL, SUMMARY_JSON]


def segment_video(
    session: Any,
    source: Frames,
    output: str | Path,
    *,
    policy: str | None = None,
    depth: int = 2,
    alpha: float = 0.5,
    max_frames: int | None = None,
    write_video: bool = True,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    on_mask: Callable[[int, np.ndarray], None] | None = None,
) -> dict[str, Any]:
    """Segment every frame (``policy="all"``) or the freshest frames (``"latest"``, the default for
    cameras) of ``source`` into ``output``; returns the summary (also written to ``summary.json``).
    ``on_mask(index, mask)`` sees every mask as it comes (bag replay writes them to a recording);
    a source's ``report()`` (if it has one) adds its own entries to the summary."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    policy = policy or ("latest" if source.live else "all")
    names = session.class_names

    def frames() -> Iterator[np.ndarray]:
        for index, frame in enumerate(source):
            if max_frames is not None and index >= max_frames:
                return
            kept[index] = frame
            yield session.from_rgb(frame)  # decoded RGB; an --accept bgr8 artifact takes BGR

    kept: dict[int, np.ndarray] = {}  # frames in flight, for the overlay (released as they are written)
    writer: VideoWriter | None = None
    strip = np.zeros((0, 0, 3), np.uint8)
    video_hw: tuple[int, int] = (0, 0)  # the overlay video's frame size: the first frame's
    latencies: list[float] = []
    written, dropped, started = 0, 0, time.perf_counter()
    ok = False
    try:
        with atomic_output(out / FRAMES_JSONL) as tmp_lines, open(tmp_lines, "w") as lines:
            for index, mask, timings in session.stream(frames(), depth=depth, policy=policy):
                frame = kept.pop(index)
                if on_mask is not None:
                    on_mask(index, mask)
                for stale in [i for i in kept if i < index]:  # dropped by the latest-frame policy
                    kept.pop(stale)
                if write_video:
                    if writer is None:  # one legend of every class: the frame size stays constant
                        strip = legend(names or [str(c) for c in range(session.num_classes)], frame.shape[1])
                        video_hw = image_hw(frame)
                        writer = VideoWriter(
                            out / OVERLAY_VIDEO, source.fps, (frame.shape[0] + strip.shape[0], frame.shape[1])
                        )
                    picture = overlay(frame, mask, session.num_classes, alpha)
                    if picture.shape[:2] != video_hw:  # a stream that changes resolution (spliced files, a
                        picture = resize_image(picture, video_hw)  # camera renegotiating): one size per video
                    writer.write(np.concatenate([picture, strip]))
                values, counts = np.unique(mask, return_counts=True)
                record = {
                    "index": index,
                    "timestamp": round(source.timestamps.get(index, index / source.fps), 4),
                    **{f"{k}_ms": round(v, 3) for k, v in timings.items() if k != "dropped"},
                    "pixels": {
                        names[v] if v < len(names) else str(int(v)): int(c)
                        for v, c in zip(values.tolist(), counts.tolist())
                    },
                }
                lines.write(json.dumps(record) + "\n")
                latencies.append(timings["latency"])
                dropped = int(timings["dropped"])
                written += 1
                if progress is not None:
                    progress(index, timings)
            if written == 0:  # raised inside, so no empty frames.jsonl is left to block the next run
                raise InputError(
                    f"{source.name} yielded no frames to segment (its video stream holds no decodable frames)"
                )
        ok = True
    finally:
        if writer is not None:
            writer.close(ok=ok)
        source.close()
    seconds = time.perf_counter() - started
    summary = {
        "source": source.name,
        "policy": policy,
        "frames": written,
        "dropped": dropped,
        "seconds": round(seconds, 3),
        "fps": round(written / seconds, 2),
        "latency_ms": {
            "p50": _percentile(latencies, 50),
            "p90": _percentile(latencies, 90),
            "p99": _percentile(latencies, 99),
            "max": _percentile(latencies, 100),
        },
        "overlay": str(out / OVERLAY_VIDEO) if write_video else None,
        "frames_jsonl": str(out / FRAMES_JSONL),
        "video_codec": writer.codec if writer else None,
        **(source.report() if hasattr(source, "report") else {}),
    }
    with atomic_output(out / SUMMARY_JSON) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def read_video(path: str | Path, max_frames: int | None = None) -> list[np.ndarray]:
    """Every frame of a (short) video as RGB arrays: for tests and small tools."""
    source = open_video(path)
    try:
        return [f for i, f in enumerate(source) if max_frames is None or i < max_frames]
    finally:
        source.close()
