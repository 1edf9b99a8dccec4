"""ROS 2 recordings (MCAP) in, a mask recording, an overlay video and per-frame records out, with no
ROS installed: the ``mcap`` and ``mcap-ros2-support`` packages read and write the CDR messages.

:func:`replay_bag` is the job behind ``danet-run --bag FILE.mcap --topic /camera/image_raw -o OUT``:
every ``sensor_msgs/Image`` or ``CompressedImage`` of the topic goes through :func:`segment_video`
(the same pipeline, ``overlay.mp4``, ``frames.jsonl`` and ``summary.json`` as ``--video``), and each
mask is written to ``OUT/masks.mcap`` as a ``sensor_msgs/Image`` (mono8, or mono16 above 256 classes)
with the input's header (stamp, frame_id) and log/publish times, on ``--mask-topic`` (default
``/segmentation/mask``, the topic the ROS node publishes). A frame that cannot be read (unknown
encoding, short data, undecodable JPEG) is skipped and counted by cause in the summary, as the node
counts it in its diagnostics.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    ConfigError,
    FrameError,
    InputError,
    summarize_exception,
)
from ..util.files import atomic_output
from .ros_images import mask_to_image_fields, message_to_rgb
from .video import segment_video

MASKS_MCAP = "masks.mcap"
MASK_TOPIC = "/segmentation/mask"
IMAGE_TYPE, COMPRESSED_TYPE = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
_SEPARATOR = "=" * 80
_HEADER_DEFS = (
    f"{_SEPARATOR}\nMSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n"
    f"{_SEPARATOR}\nMSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"
)
#: ROS 2 message definitions (with their dependencies) as MCAP schemas carry them
MSGDEFS = {
    IMAGE_TYPE: "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
    "uint32 step\nuint8[] data\n" + _HEADER_DEFS,
    COMPRESSED_TYPE: "std_msgs/Header header\nstring format\nuint8[] data\n" + _HEADER_DEFS,
}


def _mcap() -> tuple[Any, Any, Any]:
    """The mcap reader, the ROS 2 decoder factory and writer (the ``bag`` extra), imported on use."""
    from ..extras import require

    what = "reading and writing ROS 2 bags"
    reader, decoder, writer = (require(m, what) for m in ("mcap.reader", "mcap_ros2.decoder", "mcap_ros2.writer"))
    return reader.make_reader, decoder.DecoderFactory, writer.Writer


class BagFrameSource:
    """RGB frames of one image topic of an MCAP file, with each message's header and times kept
    (by frame index) for the mask recording; what :func:`segment_video` reads from a video."""

    live = False

    def __init__(
        self,
        path: str | Path,
        topic: str | None,
        max_pixels: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        make_reader, decoder_factory, _ = _mcap()
        self.name, self.max_pixels = str(path), max_pixels
        self.log = log or (lambda text: print(text, file=sys.stderr))
        try:
            self._file = open(path, "rb")  # noqa: SIM115 - held open while frames are read; close() closes it
        except OSError as exc:
            raise InputError(f"cannot open bag {path}: {exc.strerror or exc}") from None
        try:
            self._reader = make_reader(self._file, decoder_factories=[decoder_factory()])
            summary = self._reader.get_summary()
        except Exception as exc:
            self._file.close()
            raise InputError(
                f"{path} is not a readable MCAP file ({summarize_exception(exc)}); record with ros2 bag record -s mcap"
            ) from None
        if summary is None:  # no summary section (a recording cut short): no topic list, no counts
            self._file.close()
            raise InputError(f"{path} has no MCAP summary (a recording cut short?); repair it with `mcap recover`")
        images = {
            c.topic: summary.schemas[c.schema_id].name
            for c in summary.channels.values()
            if c.schema_id in summary.schemas and summary.schemas[c.schema_id].name in MSGDEFS
        }
        if topic is None and len(images) == 1:
            topic = next(iter(images))
        if topic not in images:
            self._file.close()
            have = ", ".join(f"{t} ({k.rsplit('/', 1)[-1]})" for t, k in sorted(images.items())) or "none"
            raise ConfigError(
                f"{path}: {'give --topic; ' if topic is None else f'no image topic {topic!r}; '}"
                f"image topics in the bag: {have}"
            )
        self.topic = topic
        channels = [c.id for c in summary.channels.values() if c.topic == topic]
        stats = summary.statistics
        self.frame_count = sum(stats.channel_message_counts.get(c, 0) for c in channels) if stats else 0
        span_s = (stats.message_end_time - stats.message_start_time) / 1e9 if stats else 0.0
        self.fps = (self.frame_count - 1) / span_s if self.frame_count > 1 and span_s > 0 else 30.0
        self.timestamps: dict[int, float] = {}
        self.records: dict[int, dict[str, Any]] = {}  # header and times of frames in flight
        self.skipped: Counter[str] = Counter()
        self.outputs: dict[str, str] = {}  # what the replay writes beside the video's files (for the summary)

    def __iter__(self) -> Iterator[np.ndarray]:
        index = 0
        try:
            for _, _, message, decoded in self._reader.iter_decoded_messages(topics=[self.topic]):
                try:
                    rgb = message_to_rgb(decoded, self.max_pixels)
                except FrameError as exc:
                    self._skip(exc.cause, str(exc))
                    continue
                stamp = decoded.header.stamp
                self.timestamps[index] = stamp.sec + stamp.nanosec / 1e9
                self.records[index] = {
                    "sec": stamp.sec,
                    "nanosec": stamp.nanosec,
                    "frame_id": decoded.header.frame_id,
                    "log_time": message.log_time,
                    "publish_time": message.publish_time,
                }
                index += 1
                yield rgb
        except (FrameError, ConfigError):
            raise
        except Exception as exc:
            raise InputError(
                f"{self.name}: reading the bag failed after {index} frames: {summarize_exception(exc)}"
            ) from None

    def _skip(self, cause: str, text: str) -> None:
        if not self.skipped[cause]:  # once per cause; the counts go to summary.json
            self.log(f"skipping bad frames ({cause}): {text}")
        self.skipped[cause] += 1

    def report(self) -> dict[str, Any]:
        return {"topic": self.topic, "bad_frames": dict(self.skipped), **self.outputs}

    def close(self) -> None:
        self._file.close()


def write_image(writer: Any, schema: Any, topic: str, fields: dict[str, Any], record: dict[str, Any]) -> None:
    """One ``sensor_msgs/Image`` with the header and times of ``record`` (stamp, frame_id, log/publish time)."""
    message = {
        "header": {"stamp": {"sec": record["sec"], "nanosec": record["nanosec"]}, "frame_id": record["frame_id"]},
        **fields,
    }
    writer.write_message(topic, schema, message, log_time=record["log_time"], publish_time=record["publish_time"])


def replay_bag(
    session: Any,
    bag: str | Path,
    output: str | Path,
    *,
    topic: str | None = None,
    mask_topic: str = MASK_TOPIC,
    alpha: float = 0.5,
    max_frames: int | None = None,
    write_video: bool = True,
    max_pixels: int | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Segment every frame of ``topic`` in ``bag`` into ``output`` (see the module docstring);
    returns the summary (also in ``summary.json``). ``masks.mcap`` appears whole or not at all."""
    _, _, writer_class = _mcap()
    if not mask_topic.startswith("/"):
        raise ConfigError(f"--mask-topic must be an absolute topic name such as {MASK_TOPIC}, got {mask_topic!r}")
    source = BagFrameSource(bag, topic, max_pixels=max_pixels)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    source.outputs = {"masks_mcap": str(out / MASKS_MCAP), "mask_topic": mask_topic}
    with atomic_output(out / MASKS_MCAP) as tmp, open(tmp, "wb") as handle:
        writer = writer_class(handle)
        schema = writer.register_msgdef(IMAGE_TYPE, MSGDEFS[IMAGE_TYPE])

        def on_mask(index: int, mask: np.ndarray) -> None:
            record = source.records.pop(index)
            for stale in [i for i in source.records if i < index]:
                source.records.pop(stale)
            write_image(writer, schema, mask_topic, mask_to_image_fields(mask, session.num_classes), record)

        summary = segment_video(
            session,
            source,
            out,
            policy="all",
            alpha=alpha,
            max_frames=max_frames,
            write_video=write_video,
            progress=progress,
            on_mask=on_mask,
        )
        writer.finish()
    return summary
