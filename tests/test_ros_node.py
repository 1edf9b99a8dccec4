"""The ROS 2 package for real: colcon-built, its node started from the installed executable in a
private network namespace, fed by a second process (tests/ros_driver.py)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from ros_support import (
    colcon,
    colcon_build,
    executable,
    node_env,
    ros_unavailable,
    sandbox,
)

REASON = ros_unavailable()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=REASON or ""), pytest.mark.ros]
SIZE = (96, 120)  # not the engine's 128x128: the node resizes like Session.run
FRAMES = 30


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from danet_deploy.export import ExportRequest, export

    folder, _ = export(
        ExportRequest(
            model="danet_demo",
            target="onnx",
            input_size=(128, 128),
            output=tmp_path_factory.mktemp("ros") / "danet_onnx",
        ),
        log=lambda _: None,
    )
    return folder


@pytest.fixture(scope="module")
def install(tmp_path_factory):
    if colcon() is None:
        pytest.skip("colcon is not installed (pip install '.[ros]')")
    return colcon_build(tmp_path_factory.mktemp("ws"))


@pytest.fixture(scope="module")
def frames():
    from danet_deploy.data.scene_video import scene_pan

    return np.stack(scene_pan(frames=FRAMES, size=SIZE)[0])


@pytest.fixture(scope="module")
def drive(artifact, install, frames, tmp_path_factory):
    """One run of the node with everything the tests below check."""
    folder = tmp_path_factory.mktemp("drive")
    np.savez(folder / "frames.npz", frames=frames)
    done = sandbox.run_isolated(
        [
            sys.executable,
            str(sandbox_driver()),
            str(executable(install)),
            str(artifact),
            str(folder / "frames.npz"),
            str(folder / "out.npz"),
        ],
        env=node_env(install),
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = np.load(folder / "out.npz")
    return json.loads(str(out["summary"])), out["masks"], out["compressed"]


def sandbox_driver():
    from pathlib import Path

    return Path(__file__).with_name("ros_driver.py")


@pytest.mark.slow
def test_colcon_build_installs_the_executables_and_launch_files(install):
    for name in ("segmentation", "segmentation_lifecycle"):
        assert executable(install, name).is_file()
    share = install / "danet_deploy_ros" / "share" / "danet_deploy_ros"
    assert (share / "launch" / "segmentation.launch.py").is_file() and (share / "config" / "params.yaml").is_file()
    assert (share / "package.xml").is_file()


@pytest.mark.slow
def test_masks_equal_session_run_with_headers_preserved(drive, artifact, frames):
    from danet_deploy import runtime

    summary, masks, _ = drive
    assert summary["first"] and summary["received"] == FRAMES, summary
    assert summary["mask_encoding"] == ["mono8"]
    assert summary["headers"] == [f"cam_{2000 + i}" for i in range(FRAMES)]
    with runtime.load(artifact) as session:
        expected = np.stack(session.run(list(frames)))
    np.testing.assert_array_equal(masks, expected)  # rgb8, bgr8 and padded rows alike


@pytest.mark.slow
def test_compressed_images_overlay_and_late_label_info(drive, artifact, frames):
    from danet_deploy import runtime

    summary, _, compressed = drive
    assert summary["compressed_ok"] and summary["compressed_frame_id"] == "compressed"
    with runtime.load(artifact) as session:
        np.testing.assert_array_equal(compressed, session.run(frames[1]))  # PNG: lossless
        labels = json.loads(summary["label_info"])
        assert [c["name"] for c in labels["classes"]] == session.class_names
    assert summary["overlay_ok"] and summary["overlay_encodings"] == ["rgb8"]


@pytest.mark.slow
def test_bad_frames_are_dropped_counted_and_good_frames_continue(drive):
    summary, _, _ = drive
    assert summary["after_bad"] and summary["still_running"]
    diagnostics = summary["diagnostics"]
    assert int(diagnostics["bad_frames_encoding"]) >= 1 and int(diagnostics["bad_frames_decode"]) >= 1, diagnostics
    assert float(diagnostics["fps"]) >= 0 and diagnostics["latency_p50_ms"] and diagnostics["engine"]
    assert "dropping bad frames (encoding)" in summary["log"] and "dropping bad frames (decode)" in summary["log"]
    assert summary["log"].count("dropping bad frames (decode)") == 1  # once per cause


@pytest.mark.slow
def test_parameter_changes_are_checked_and_the_node_keeps_running(drive):
    summary, _, _ = drive
    answers = summary["answers"]
    assert answers["alpha=1.5"][0] is False and "alpha" in answers["alpha=1.5"][1]
    assert answers["artifact"][0] is False and "read-only" in answers["artifact"][1]
    assert answers["alpha=0.25"] == [True, ""]
    assert summary["still_running"]


@pytest.mark.slow
def test_sigint_stops_the_node_with_no_thread_left(drive):
    summary, _, _ = drive
    assert summary["rc"] == 0, summary["log"][-2000:]
    assert "threads left: []" in summary["log"]


@pytest.mark.slow
def test_a_bad_artifact_or_parameter_at_start_exits_2_with_the_reason(install, tmp_path):
    exe = str(executable(install))
    done = sandbox.run_isolated(
        [exe, "--ros-args", "-p", f"artifact:={tmp_path / 'missing'}"], env=node_env(install), timeout=60
    )
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr, done.stderr
    done = sandbox.run_isolated(
        [exe, "--ros-args", "-p", "artifact:=x", "-p", "alpha:=3.0"], env=node_env(install), timeout=60
    )
    assert done.returncode == 2 and "alpha" in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
def test_lifecycle_node_configures_activates_deactivates_and_cleans_up(install, artifact, tmp_path):
    out = tmp_path / "lifecycle.json"
    done = sandbox.run_isolated(
        [
            sys.executable,
            str(sandbox_driver()),
            "--lifecycle",
            str(executable(install, "segmentation_lifecycle")),
            str(artifact),
            str(out),
        ],
        env=node_env(install),
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = json.loads(out.read_text())
    assert steps["initial"] == "unconfigured"
    assert steps["configure_missing"] is False and steps["after_failure"] == "unconfigured", steps["log"][-2000:]
    assert steps["set_artifact"] and steps["configure"] and not steps["inactive_mask"]
    assert steps["set_while_configured"][0] is False and "unconfigured" in steps["set_while_configured"][1]
    assert steps["activate"] and steps["active_mask"], steps["log"][-2000:]
    assert steps["deactivate"] and not steps["deactivated_mask"]
    assert steps["cleanup"] and steps["final"] == "unconfigured"
    assert steps["rc"] == 0 and "threads left: []" in steps["log"], steps["log"][-2000:]
