"""Video and camera I/O (danet-run --video/--camera)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV is in the video/all-cpu extras")

from danet_deploy import runtime
from danet_deploy.cli.run import main as run_main
from danet_deploy.data.metrics import SegmentationMetrics
from danet_deploy.data.scene_video import render_scene_video, scene_pan
from danet_deploy.export import ExportRequest, export
from danet_deploy.runtime.video import read_video

SIZE = (96, 128)
FRAMES = 16


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    folder, _ = export(
        ExportRequest(
            model="danet_demo", target="onnx", input_size=SIZE, emit="mask", output=tmp_path_factory.mktemp("v") / "a"
        ),
        log=lambda _: None,
    )
    return folder


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "pan.mp4"
    labels = render_scene_video(path, frames=FRAMES, size=SIZE, fps=8)
    return path, labels


def test_rendered_video_round_trips(video):
    path, labels = video
    frames = read_video(path)
    assert len(frames) == len(labels) == FRAMES and frames[0].shape == (*SIZE, 3)
    originals = scene_pan(frames=FRAMES, size=SIZE)[0]
    assert np.abs(frames[5].astype(int) - originals[5]).mean() < 12  # lossy H.264, same picture


def test_run_video_writes_overlay_records_and_summary(artifact, video, tmp_path, capsys):
    path, labels = video
    out = tmp_path / "out"
    assert run_main(["--model", str(artifact), "--video", str(path), "-o", str(out), "--threads", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == FRAMES and summary["dropped"] == 0 and summary["policy"] == "all"
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"] and summary["fps"] > 0
    assert json.loads((out / "summary.json").read_text()) == summary
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(FRAMES))
    assert records[1]["timestamp"] == pytest.approx(1 / 8, abs=1e-3)
    assert all(sum(r["pixels"].values()) == SIZE[0] * SIZE[1] for r in records)
    assert {"latency_ms", "engine_ms", "pre_ms", "post_ms"} <= set(records[0])
    overlay = read_video(out / "overlay.mp4")
    assert len(overlay) == FRAMES and overlay[0].shape[1] == SIZE[1] and overlay[0].shape[0] > SIZE[0]  # + legend
    # the masks are meaningful: the video's frames segment like the scenes they came from
    with runtime.load(artifact) as session:
        metrics = SegmentationMetrics(session.num_classes)
        for frame, label in zip(read_video(path), labels):
            metrics.update(session.run(frame), label)
    assert metrics.miou() > 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--camera", "97", "--max-frames", "3"], "camera /dev/video97 does not exist"),
        (["--camera", "0"], "--camera needs --max-frames"),
        (["--video", "missing.mp4"], "does not exist"),
        ([], "give images, --video FILE, --bag FILE.mcap or --camera N"),
    ],
)
def test_bad_sources_are_clean_errors(artifact, tmp_path, capsys, args, message):
    assert run_main(["--model", str(artifact), "-o", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err


def test_corrupt_video_is_a_clean_error(artifact, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    assert run_main(["--model", str(artifact), "--video", str(bad), "-o", str(tmp_path / "o")]) == 2
    assert "not a readable video" in capsys.readouterr().err or "decoding failed" in capsys.readouterr().err
    assert not (tmp_path / "o" / "overlay.mp4").exists()


def test_run_video_refuses_to_replace_files_in_the_output_folder(artifact, video, tmp_path, capsys):
    path, _ = video
    out = tmp_path / "out"
    out.mkdir()
    (out / "overlay.mp4").write_bytes(b"the user's own video")
    base = ["--model", str(artifact), "--video", str(path), "-o", str(out), "--threads", "1", "--max-frames", "2"]
    assert run_main(base) == 2
    assert "already has overlay.mp4" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["overlay.mp4"]
    assert (out / "overlay.mp4").read_bytes() == b"the user's own video"
    assert run_main([*base, "--no-video"]) == 0  # the records alone do not touch the video
    assert (out / "overlay.mp4").read_bytes() == b"the user's own video"
    assert run_main([*base, "--force"]) == 0
    assert len(read_video(out / "overlay.mp4")) == 2


def _spliced_video(path: Path, sizes: list[tuple[int, int]], frames: int = 4) -> None:
    """MPEG-TS segments of different frame sizes back to back (TS concatenates byte-wise), as a
    camera that renegotiates its resolution or spliced recordings give."""
    import av

    data = b""
    for k, size in enumerate(sizes):
        part = path.with_suffix(f".{k}.ts")
        with av.open(str(part), "w", format="mpegts") as container:
            stream = container.add_stream("mpeg2video", rate=8)
            stream.height, stream.width, stream.pix_fmt = *size, "yuv420p"
            for image in scene_pan(frames=frames, size=size)[0]:
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        data += part.read_bytes()
    path.write_bytes(data)


@pytest.mark.parametrize("second", [(96, 128), (48, 64)])
def test_a_video_that_changes_resolution_keeps_one_overlay_size(artifact, tmp_path, capsys, second):
    """The overlay of a larger or smaller later frame did not fit the first frame's legend (ValueError)."""
    path = tmp_path / "spliced.ts"
    _spliced_video(path, [(64, 80), second])
    sizes = [f.shape[:2] for f in read_video(path)]
    assert set(sizes) == {(64, 80), second}
    out = tmp_path / "out"
    assert run_main(["--model", str(artifact), "--video", str(path), "-o", str(out), "--threads", "1"]) == 0
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [sum(r["pixels"].values()) for r in records] == [h * w for h, w in sizes]  # each mask at its frame's size
    overlay = read_video(out / "overlay.mp4")
    assert len(overlay) == len(sizes) and {f.shape[1] for f in overlay} == {80}


def test_a_video_stream_without_frames_leaves_nothing_behind(artifact, tmp_path, capsys):
    """An empty frames.jsonl was committed before the error, so the rerun then asked for --force."""
    import av

    path = tmp_path / "no-frames.mkv"
    with av.open(str(path), "w", format="matroska") as container:  # a video stream, only audio packets
        video = container.add_stream("mpeg4", rate=8)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*audio.encode(frame), *audio.encode()]:
            container.mux(packet)
    out = tmp_path / "out"
    for _ in range(2):  # the second run meets the same error, not a refusal to overwrite
        assert run_main(["--model", str(artifact), "--video", str(path), "-o", str(out)]) == 2
        assert "yielded no frames" in capsys.readouterr().err
        assert not out.exists() or not any(out.iterdir())


def test_frames_above_the_pixel_limit_are_refused_from_the_header_and_per_frame(artifact, video, tmp_path, capsys):
    """--max-pixels guarded images only: a video declaring huge frames was decoded whatever its size."""
    path, _ = video  # 96x128 = 12288 pixels a frame
    out = tmp_path / "out"
    assert run_main(["--model", str(artifact), "--video", str(path), "-o", str(out), "--max-pixels", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "128x96 frames" in err and "above the 0.01 MP limit" in err and "--max-pixels" in err
    assert not out.exists() or not any(out.iterdir())
    spliced = tmp_path / "spliced.ts"  # the header says 64x80; later frames are 96x128
    _spliced_video(spliced, [(64, 80), (96, 128)])
    assert run_main(["--model", str(artifact), "--video", str(spliced), "-o", str(out), "--max-pixels", "0.006"]) == 2
    assert "128x96 frames" in capsys.readouterr().err
    assert not any(out.iterdir())
    assert run_main(["--model", str(artifact), "--video", str(path), "-o", str(out), "--max-pixels", "0.0123"]) == 0
