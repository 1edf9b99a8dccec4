"""danet-run --bag: a ROS 2 recording (MCAP written here, no ROS needed) into a mask recording with the
same stamps, the overlay video and the per-frame records; bad frames skipped and counted."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("mcap_ros2", reason="bag replay needs mcap + mcap-ros2-support (the bag or ros extra)")
pytest.importorskip("av", reason="the overlay video needs PyAV (video/all-cpu extras)")

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from mcap_ros2.writer import Writer

from danet_deploy import runtime
from danet_deploy.cli.run import main as run_main
from danet_deploy.data.scene_video import scene_pan
from danet_deploy.runtime.bag import COMPRESSED_TYPE, IMAGE_TYPE, MSGDEFS, write_image

SIZE = (48, 64)
FRAMES = 6


@pytest.fixture(scope="module")
def artifact(demo_mask_artifact_64):
    return demo_mask_artifact_64


@pytest.fixture(scope="module")
def frames():
    return scene_pan(frames=FRAMES, size=SIZE)[0]


def record(sec: int) -> dict:
    return {
        "sec": sec,
        "nanosec": 500,
        "frame_id": f"cam_{sec}",
        "log_time": sec * 10**9 + 7,
        "publish_time": sec * 10**9 + 9,
    }


@pytest.fixture(scope="module")
def bag(tmp_path_factory, frames):
    """rgb8 frames on /cam/image with a yuv422 frame among them (bgr8 with padded rows too), and PNG
    frames plus one broken JPEG on /cam/compressed."""
    path = tmp_path_factory.mktemp("bag") / "drive.mcap"
    with open(path, "wb") as handle:
        writer = Writer(handle)
        image, compressed = (writer.register_msgdef(t, MSGDEFS[t]) for t in (IMAGE_TYPE, COMPRESSED_TYPE))
        for i, rgb in enumerate(frames):
            if i == 2:
                write_image(
                    writer,
                    image,
                    "/cam/image",
                    {"height": 2, "width": 2, "encoding": "yuv422", "is_bigendian": 0, "step": 4, "data": bytes(8)},
                    record(99),
                )
            rows = np.zeros((SIZE[0], SIZE[1] * 3 + 4), np.uint8)
            rows[:, : SIZE[1] * 3] = (rgb[..., ::-1] if i % 2 else rgb).reshape(SIZE[0], -1)
            write_image(
                writer,
                image,
                "/cam/image",
                {
                    "height": SIZE[0],
                    "width": SIZE[1],
                    "is_bigendian": 0,
                    "encoding": "bgr8" if i % 2 else "rgb8",
                    "step": rows.shape[1],
                    "data": rows.tobytes(),
                },
                record(100 + i),
            )
            png = io.BytesIO()
            from PIL import Image

            Image.fromarray(rgb).save(png, format="PNG")
            head = {
                "header": {"stamp": {"sec": 200 + i, "nanosec": 0}, "frame_id": "c"},
                "format": "png",
                "data": png.getvalue(),
            }
            writer.write_message("/cam/compressed", compressed, head, log_time=(200 + i) * 10**9)
        writer.write_message(
            "/cam/compressed",
            compressed,
            {
                "header": {"stamp": {"sec": 300, "nanosec": 0}, "frame_id": "c"},
                "format": "jpeg",
                "data": b"\xff\xd8broken",
            },
            log_time=300 * 10**9,
        )
        writer.finish()
    return path


def read_masks(path):
    with open(path, "rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        return [
            (
                schema.name,
                channel.topic,
                message.log_time,
                message.publish_time,
                m.header.stamp.sec,
                m.header.stamp.nanosec,
                m.header.frame_id,
                m.encoding,
                np.frombuffer(m.data, np.uint8).reshape(m.height, m.width),
            )
            for schema, channel, message, m in reader.iter_decoded_messages()
        ]


def test_bag_replay_writes_masks_with_the_same_stamps(artifact, bag, frames, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        run_main(
            ["--model", str(artifact), "--bag", str(bag), "--topic", "/cam/image", "-o", str(out), "--threads", "1"]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == FRAMES and summary["bad_frames"] == {"encoding": 1} and summary["topic"] == "/cam/image"
    assert json.loads((out / "summary.json").read_text()) == summary
    masks = read_masks(out / "masks.mcap")
    with runtime.load(artifact) as session:
        expected = session.run(list(frames))
    assert [m[:8] for m in masks] == [
        (
            IMAGE_TYPE,
            "/segmentation/mask",
            (100 + i) * 10**9 + 7,
            (100 + i) * 10**9 + 9,
            100 + i,
            500,
            f"cam_{100 + i}",
            "mono8",
        )
        for i in range(FRAMES)
    ]
    for got, want in zip(masks, expected):
        np.testing.assert_array_equal(got[8], want)
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [r["timestamp"] for r in records] == pytest.approx([100 + i + 5e-7 for i in range(FRAMES)])
    assert (out / "overlay.mp4").stat().st_size > 0


def test_bag_replay_of_compressed_images_counts_undecodable_ones(artifact, bag, frames, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        run_main(
            [
                "--model",
                str(artifact),
                "--bag",
                str(bag),
                "--topic",
                "/cam/compressed",
                "-o",
                str(out),
                "--no-video",
                "--mask-topic",
                "/seg/mask",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["bad_frames"] == {"decode": 1} and summary["frames"] == FRAMES
    masks = read_masks(out / "masks.mcap")
    assert [m[1] for m in masks] == ["/seg/mask"] * FRAMES and [m[4] for m in masks] == [200 + i for i in range(FRAMES)]
    with runtime.load(artifact) as session:
        for got, rgb in zip(masks, frames):
            np.testing.assert_array_equal(got[8], session.run(rgb))  # PNG is lossless
    assert not (out / "overlay.mp4").exists()


def test_bag_replay_refuses_bad_topics_files_and_overwrites(artifact, bag, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--model", str(artifact), "-o", str(out)]
    assert run_main([*base, "--bag", str(bag), "--topic", "/nope"]) == 2
    err = capsys.readouterr().err
    assert "no image topic '/nope'" in err and "/cam/image (Image)" in err and "/cam/compressed" in err
    assert run_main([*base, "--bag", str(bag)]) == 2  # two image topics: which one?
    assert "give --topic" in capsys.readouterr().err
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(bag.read_bytes()[:300])
    assert run_main([*base, "--bag", str(broken), "--topic", "/cam/image"]) == 2
    assert "MCAP" in capsys.readouterr().err
    assert run_main([*base, "--topic", "/cam/image", "--video", str(bag)]) == 2
    assert not out.exists() or not any(out.iterdir())
    out.mkdir(exist_ok=True)
    (out / "masks.mcap").write_bytes(b"the user's own recording")
    assert run_main([*base, "--bag", str(bag), "--topic", "/cam/image"]) == 2
    assert "already has masks.mcap" in capsys.readouterr().err
    assert (out / "masks.mcap").read_bytes() == b"the user's own recording"
