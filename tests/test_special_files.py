"""A FIFO or ``/dev/stdin`` given where a file is read is named for what it is, not "does not exist".

Only ``stat`` looks at such a path (opening a FIFO would block until a writer comes); each command
refuses it with exit 2 and says to save the data to a file.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from danet_deploy.errors import ArtifactError, CheckpointError, InputError
from danet_deploy.util.files import not_a_file_reason

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def test_the_reason_names_the_kind_of_file(fifo, tmp_path):
    assert "named pipe (FIFO)" in not_a_file_reason(fifo)
    assert not_a_file_reason(tmp_path / "missing") == "does not exist"
    assert not_a_file_reason(tmp_path) == "is a folder"


def test_library_readers_name_a_fifo(fifo):
    from danet_deploy import runtime
    from danet_deploy.data.images import check_image_file
    from danet_deploy.model.checkpoints import read_checkpoint

    with pytest.raises(InputError, match="named pipe"):
        check_image_file(fifo)
    with pytest.raises(CheckpointError, match="named pipe"):
        read_checkpoint(fifo)
    with pytest.raises(ArtifactError, match="named pipe"):
        runtime.load(fifo)


def test_video_names_a_fifo(fifo):
    pytest.importorskip("av")
    from danet_deploy.runtime.video import open_video

    with pytest.raises(InputError, match="named pipe"):
        open_video(fifo)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--model", "danet_demo", "{fifo}", "-o", "{out}"],
        ["export", "--model", "{fifo}", "-o", "{out}"],
        ["parity", "{fifo}"],
    ],
)
def test_commands_name_a_fifo(fifo, tmp_path, capsys, argv):
    module = __import__(f"danet_deploy.cli.{argv[0]}", fromlist=["main"])
    code = module.main([a.format(fifo=fifo, out=tmp_path / "out") for a in argv[1:]])
    err = capsys.readouterr().err
    assert code == 2 and "named pipe" in err and "does not exist" not in err


def test_dev_stdin_from_a_pipe_is_named(tmp_path):
    if not os.path.exists("/dev/stdin"):
        pytest.skip("no /dev/stdin")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "danet_deploy.cli.run",
            "--model",
            "danet_demo",
            "/dev/stdin",
            "-o",
            str(tmp_path / "out"),
        ],
        input=b"",
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 2 and b"named pipe" in proc.stderr
