"""danet-serve on a real Triton server (PyTriton), loopback only, bounded in count and time.

Needs the ``serve`` extra (nvidia-pytriton, tritonclient); skipped with the reason without it.
Each server is a ``danet-serve`` process in its own process group, so a test can kill the
whole server (PyTriton's process, tritonserver and its Python backend stubs) like a crash would.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="nvidia-pytriton (serve extra) not installed: pip install 'danet-deploy[serve]'")
pytest.importorskip(
    "tritonclient.grpc", reason="tritonclient (serve extra) not installed: pip install 'danet-deploy[serve]'"
)

from danet_deploy import runtime
from danet_deploy.errors import ConfigError, ServeError
from danet_deploy.serve import libpython
from danet_deploy.serve.client import SegmentationClient
from danet_deploy.serve.loadtest import generated_images, run_load
from danet_deploy.serve.server import ServeOptions

SIZE = (64, 64)
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m danet_deploy.cli.serve ARTIFACT ...`` in its own session, its output in a log file."""

    def __init__(self, artifact: Path, log: Path, http_port: int, grpc_port: int, *extra: str) -> None:
        self.http_port, self.grpc_port, self.log = http_port, grpc_port, log
        cmd = [
            sys.executable,
            "-m",
            "danet_deploy.cli.serve",
            str(artifact),
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(grpc_port),
            "--instances",
            "2",
            "--threads",
            "1",
            "--exit-timeout",
            "5",
            *extra,
        ]
        self.out = open(log, "ab")  # noqa: SIM115 open for the server's lifetime
        # PyTriton's workspace (a copy of tritonserver) in a folder of our own, since a killed server leaves it
        # behind; short, because it holds Unix sockets (paths of at most 107 bytes)
        self.home = tempfile.mkdtemp(prefix="pyt-")
        env = {**os.environ, "PYTRITON_HOME": self.home}
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def wait_ready(self) -> None:
        with SegmentationClient(f"127.0.0.1:{self.http_port}", "http") as client:
            deadline = time.monotonic() + START_TIMEOUT
            while not client.ready():
                if self.proc.poll() is not None:
                    raise AssertionError(f"danet-serve exited with {self.proc.returncode}:\n{self.tail()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"danet-serve not ready after {START_TIMEOUT} s:\n{self.tail()}")
                time.sleep(0.3)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole group: the server dies mid-request like a crashed machine's would."""
        pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30  # orphaned children are reaped by init a moment later
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        for shm in Path("/dev/shm").glob(f"pytrtion{pid}-*"):  # PyTriton's segments (its spelling)
            shm.unlink(missing_ok=True)

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def close(self) -> None:
        if self.proc.poll() is None or self.group_alive():
            self.kill()
        self.out.close()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """The ONNX Runtime artifact of danet_demo (fp32, static 64x64)."""
    from danet_deploy.export import export
    from danet_deploy.export.pipeline import ExportRequest

    out = tmp_path_factory.mktemp("serve") / "danet_demo-onnx"
    path, _ = export(
        ExportRequest(model="danet_demo", target="onnx", precision="fp32", input_size=SIZE, output=str(out)),
        log=lambda _m: None,
    )
    return path


@pytest.fixture(scope="module")
def scenes(artifact):
    images = generated_images(6, SIZE)
    with runtime.load(artifact) as session:
        references = [session.run(img) for img in images]
    return images, references


@pytest.fixture(scope="module")
def server(artifact, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    srv = ServerProcess(artifact, log, free_port(), free_port(), "--max-image-side", "256")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_four_clients_get_the_in_process_masks(server, scenes, protocol):
    images, references = scenes
    port = server.http_port if protocol == "http" else server.grpc_port
    report = run_load(
        f"127.0.0.1:{port}",
        protocol,
        clients=4,
        requests_per_client=25,
        images=images,
        references=references,
        duration_s=120,
        timeout_s=30,
    )
    assert report.errors == []
    assert report.requests == 100 and report.exact == 100 and report.agreement_min == 1.0
    assert report.p50_ms <= report.p90_ms <= report.p99_ms
    assert sum(report.batch_counts.values()) >= 1 and report.mean_batch_size >= 1.0


def test_danet_client_reports_agreement_and_fails_on_a_different_model(server, artifact, tmp_path, capsys):
    """``danet-client`` against the live server: exit 0 when every mask equals the artifact run
    in-process, exit 1 (and the disagreement in the table) against another model's artifact."""
    from danet_deploy.cli.client import main as client_main
    from danet_deploy.export import export
    from danet_deploy.export.pipeline import ExportRequest

    common = [
        "--http",
        f"127.0.0.1:{server.http_port}",
        "--grpc",
        f"127.0.0.1:{server.grpc_port}",
        "--clients",
        "1,2",
        "--requests",
        "3",
        "--size",
        "64x64",
        "--scenes",
        "3",
        "--json",
    ]
    assert client_main([*common, "--artifact", str(artifact)]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["protocol"], r["clients"]) for r in runs] == [("http", 1), ("http", 2), ("grpc", 1), ("grpc", 2)]
    assert all(r["exact"] == r["requests"] == 3 * r["clients"] and not r["errors"] for r in runs)
    other, _ = export(
        ExportRequest(model="danet_edge_r18_d8", input_size=SIZE, output=str(tmp_path / "other")), log=lambda _m: None
    )
    assert client_main([*common, "--artifact", str(other)]) == 1
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert any(r["exact"] < r["requests"] for r in runs)


def _strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_load_run_that_completes_no_request_fails_and_its_report_is_json(server, capsys):
    """A --duration too short for one request passed (exit 0) having checked nothing, and its
    --json report held NaN latencies, which strict JSON readers refuse."""
    from danet_deploy.cli.client import main as client_main

    args = [
        "--http",
        f"127.0.0.1:{server.http_port}",
        "--grpc",
        "",
        "--clients",
        "1,2",
        "--requests",
        "2",
        "--size",
        "64x64",
        "--scenes",
        "1",
        "--warmup",
        "0",
    ]
    assert client_main([*args, "--duration", "1e-9", "--json"]) == 1
    captured = capsys.readouterr()
    runs = _strict_json(captured.out)["runs"]
    assert [r["requests"] for r in runs] == [0, 0] and runs[0]["p50_ms"] is None and runs[0]["mean_ms"] is None
    assert "completed no request within --duration" in captured.err
    assert client_main([*args, "--duration", "60", "--json"]) == 0
    runs = _strict_json(capsys.readouterr().out)["runs"]
    assert [r["requests"] for r in runs] == [2, 4] and runs[0]["p50_ms"] > 0


def _post(port: int, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v2/models/danet/infer", body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_malformed_requests_get_triton_errors_and_the_server_stays_up(server, scenes, protocol):
    images, references = scenes
    port = server.http_port if protocol == "http" else server.grpc_port
    bad = {
        "four channels": (np.zeros((16, 16, 4), np.uint8), "shape|dims"),
        "grey image": (np.zeros((16, 16), np.uint8), "shape|dims"),
        "float32": (np.zeros((16, 16, 3), np.float32), "data-type|FP32"),
        "int64": (np.zeros((16, 16, 3), np.int64), "data-type|INT64"),
        "empty image": (np.zeros((0, 0, 3), np.uint8), "sides must be|Model execute error|error"),
        "too large": (np.zeros((300, 8, 3), np.uint8), "sides must be|Model execute error|error"),
    }
    with SegmentationClient(f"127.0.0.1:{port}", protocol, timeout_s=30) as client:
        for what, (image, pattern) in bad.items():
            with pytest.raises(ServeError, match=pattern):
                client.call(image)
            assert client.ready(), f"server not ready after a {what} request"
        np.testing.assert_array_equal(client.segment(images[0]), references[0])


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 16, 3), (300, 8, 3)])
def test_bad_images_get_invalid_argument_with_one_line_and_no_traceback(server, shape):
    """A 0x0 or oversize image got HTTP 500 / gRPC INTERNAL carrying the server's Python traceback
    and file paths; it is the client's mistake: 400 / INVALID_ARGUMENT and the one-line reason."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    body = json.dumps(
        {"inputs": [{"name": "image", "shape": [1, *shape], "datatype": "UINT8", "data": [0] * int(np.prod(shape))}]}
    ).encode()
    status, text = _post(server.http_port, body, {"Content-Type": "application/json"})
    message = json.loads(text)["error"]
    assert status == 400, (status, text)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        tensor = grpcclient.InferInput("image", [1, *shape], "UINT8")
        tensor.set_data_from_numpy(np.zeros((1, *shape), np.uint8))
        with pytest.raises(InferenceServerException) as info:
            client.infer("danet", [tensor], client_timeout=30)
    finally:
        client.close()
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    for reply in (message, info.value.message()):
        assert reply == f"image is {shape[0]}x{shape[1]}; sides must be 1..256"


def test_servers_log_explains_tritons_config_modification_time_error(server):
    """Every start logs Triton's "Failed to set config modification time" error line (PyTriton loads
    the model with a config override) with no word on it; the log now says it is harmless."""
    from danet_deploy.serve.server import CONFIG_MTIME_LINE

    log = server.log.read_text(errors="replace")
    if CONFIG_MTIME_LINE in log:
        assert "is harmless" in log[log.index(CONFIG_MTIME_LINE) + len(CONFIG_MTIME_LINE) :]
    assert "[danet-serve] Triton's error line" in log and "ready" in log


def test_malformed_http_bodies_get_triton_errors(server, scenes):
    images, references = scenes
    for body in (b"", b"{", b'{"inputs": [{"name": "image"}]}', b'{"inputs": "x"}', b"\xff" * 64):
        status, text = _post(server.http_port, body, {"Content-Type": "application/json"})
        assert status >= 400, (body, status, text)  # Triton answers 400, or 500 for an unparsable JSON body
        assert "error" in json.loads(text)
    with SegmentationClient(f"127.0.0.1:{server.http_port}", "http") as client:
        assert client.ready()
        np.testing.assert_array_equal(client.segment(images[1]), references[1])


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_clients_recover_when_the_server_is_killed_and_restarted(artifact, scenes, tmp_path, protocol):
    images, references = scenes
    http_port, grpc_port = free_port(), free_port()
    first = ServerProcess(artifact, tmp_path / "first.log", http_port, grpc_port)
    second = None
    try:
        first.wait_ready()
        reached = threading.Event()
        result: dict = {}

        def load() -> None:
            port = grpc_port if protocol == "grpc" else http_port
            result["report"] = run_load(
                f"127.0.0.1:{port}",
                protocol,
                clients=4,
                requests_per_client=25,
                images=images,
                references=references,
                duration_s=240,
                retry_s=180,
                timeout_s=30,
                events={20: reached},
            )

        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        assert reached.wait(120), "clients made no progress"
        first.kill()  # mid-run crash: every process of the server dies
        assert not first.group_alive()
        second = ServerProcess(artifact, tmp_path / "second.log", http_port, grpc_port)
        second.wait_ready()
        thread.join(240)
        assert not thread.is_alive(), "clients did not finish after the restart"
        report = result["report"]
        assert report.errors == [], report.errors[:3]
        assert report.requests == 100 and report.exact == 100
        assert report.retries >= 1  # some requests met the dead server and were retried

        second.proc.send_signal(signal.SIGTERM)  # clean shutdown: exit 0, nothing left behind
        assert second.proc.wait(timeout=60) == 0, second.tail()
        deadline = time.monotonic() + 30
        while second.group_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not second.group_alive(), "tritonserver or a backend stub outlived danet-serve"
        assert "stopped" in second.log.read_text()
    finally:
        first.close()
        if second is not None:
            second.close()


# -- the libpython trap and start-up errors (no server needed) ----------------------------------
def test_libdir_goes_first_once():
    expected, libdir = libpython.interpreter_libpython()
    if expected is None:
        pytest.skip("this interpreter is statically linked: the stub cannot load its libpython anyway")
    env = {"LD_LIBRARY_PATH": f"/opt/x:{libdir}"}
    assert libpython.with_libdir_first(env) == libdir
    assert env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x"
    assert libpython.with_libdir_first(env) is None and env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x"
    status = libpython.check(env)
    if status.resolved is None:
        pytest.skip("ldd is not available to resolve the stub's libpython")
    assert status.ok, status


def test_the_trap_is_detected_and_explained(artifact):
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    status = libpython.check(env)
    if status.ok:
        pytest.skip("on this machine the loader finds the interpreter's own libpython without LD_LIBRARY_PATH")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "danet_deploy.cli.serve",
            str(artifact),
            "--keep-ld-library-path",
            "--http-port",
            str(free_port()),
            "--grpc-port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "LD_LIBRARY_PATH" in proc.stderr and "_recursion_count" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_failure_text_is_recognised():
    text = "Model initialize error: AttributeError: '_thread.RLock' object has no attribute '_recursion_count'"
    assert "LD_LIBRARY_PATH" in libpython.explain_failure(text)
    assert libpython.explain_failure("some other failure") is None


def test_start_up_errors_exit_2_without_traceback(artifact, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        ports = ["--http-port", str(free_port()), "--grpc-port", str(free_port())]
        cases = [
            ([str(tmp_path / "missing"), *ports], "neither an artifact folder"),
            (
                [str(artifact), "--http-port", str(busy.getsockname()[1]), "--grpc-port", str(free_port())],
                "cannot listen",
            ),
            ([str(artifact), "--http-port", "9000", "--grpc-port", "9000"], "must differ"),
            ([str(artifact), "--instances", "0"], "instances"),
            ([str(artifact), "--host", "::1", *ports], "cannot serve on IPv6"),
            ([str(artifact), "--host", "192.0.2.1", *ports], "--host must be an address of this machine"),
        ]
        for args, message in cases:
            proc = subprocess.run(
                [sys.executable, "-m", "danet_deploy.cli.serve", *args], capture_output=True, text=True, timeout=120
            )
            assert proc.returncode == 2, (args, proc.stderr[-2000:])
            assert message in proc.stderr and "Traceback" not in proc.stderr
    finally:
        busy.close()


def test_too_deep_pytriton_home_is_refused(artifact, tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    env = {**os.environ, "PYTRITON_HOME": str(deep)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "danet_deploy.cli.serve",
            str(artifact),
            "--http-port",
            str(free_port()),
            "--grpc-port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "PYTRITON_HOME" in proc.stderr and "Traceback" not in proc.stderr


def test_options_are_validated():
    with pytest.raises(ConfigError):
        ServeOptions(http_port=0)
    with pytest.raises(ConfigError):
        ServeOptions(max_batch_size=0)
    assert ServeOptions(instances=2, threads=None).threads_per_instance >= 1


@pytest.mark.parametrize("host", ["", "::1", "[::1]", " 127.0.0.1"])
def test_hosts_pytriton_cannot_serve_on_are_refused(host):
    """PyTriton builds http://HOST:PORT itself: an IPv6 address raised from inside it; '' bound every interface."""
    with pytest.raises(ConfigError, match="IPv4 address or host name"):
        ServeOptions(host=host)


def test_a_host_that_is_not_this_machine_is_not_blamed_on_a_busy_port():
    from danet_deploy.serve.server import ensure_port_free

    with pytest.raises(ServeError, match="--host must be an address of this machine") as err:
        ensure_port_free("192.0.2.1", free_port())  # TEST-NET-1: never a local address
    assert "another server" not in str(err.value)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        with pytest.raises(ServeError, match="another server uses it"):
            ensure_port_free("127.0.0.1", busy.getsockname()[1])
    finally:
        busy.close()


# -- PyTriton's multi-instance start-up handshake race (no server needed) -----------------------
REFUSED_HANDSHAKE = (
    "[400] load failed for model 'danet': version 1 is at UNAVAILABLE state: Internal: TritonModelException: Model "
    'initialize error: Traceback (most recent call last):\n  File "/tmp/f/1/model.py", line 425, in initialize\n'
    "    inference_handler_config = get_config_from_handshake_server(handshake_socket)\n  File "
    '"/tmp/f/1/communication.py", line 550, in get_config_from_handshake_server\n    sock.connect(socket_path.'
    "as_posix())\nConnectionRefusedError: [Errno 111] Connection refused\n"
)
TIMED_OUT_HANDSHAKE = "Model initialize error: TimeoutError: Timeout occurred while waiting for config file /tmp/x.sock"


def test_both_ways_of_losing_the_handshake_are_recognised():
    from danet_deploy.serve.server import lost_start_up_handshake

    assert lost_start_up_handshake(REFUSED_HANDSHAKE) and lost_start_up_handshake(TIMED_OUT_HANDSHAKE)
    assert not lost_start_up_handshake("ConnectionRefusedError: [Errno 111] from the user's own model code")
    assert not lost_start_up_handshake("load failed for model 'danet': out of memory")


class FakeTriton:
    """Stands in for ``pytriton.triton.Triton``: its first ``failures`` runs fail with ``text``."""

    runs = 0
    stops = 0
    failures = 1
    text = REFUSED_HANDSHAKE

    def __init__(self, **_: object) -> None:
        self._model_manager = SimpleNamespace(models=[])

    def bind(self, model_name: str, model_version: int, **_: object) -> None:
        # the bound model as PyTriton's model manager holds it; the server wraps its file gathering
        self._model_manager.models.append(
            SimpleNamespace(
                model_name=model_name,
                model_version=model_version,
                get_proxy_model_files=lambda: {f"file:{model_version}/model.py": b"# PyTriton's proxy model"},
            )
        )

    def run(self) -> None:
        type(self).runs += 1
        if type(self).runs <= type(self).failures:
            raise RuntimeError(type(self).text)

    def stop(self) -> None:
        type(self).stops += 1


class FakeSession:
    num_classes = 8
    closed = 0

    def describe(self) -> dict:
        return {"backend": "fake"}

    def close(self) -> None:
        FakeSession.closed += 1


@pytest.mark.parametrize(
    "failures, text, started",
    [
        (1, REFUSED_HANDSHAKE, True),
        (2, TIMED_OUT_HANDSHAKE, True),
        (3, REFUSED_HANDSHAKE, False),
        (1, "load failed for model 'danet': out of memory", False),
    ],
)
def test_a_lost_handshake_starts_triton_again(monkeypatch, failures, text, started):
    import pytriton.triton

    from danet_deploy.serve import server as server_module

    monkeypatch.setattr(FakeTriton, "runs", 0)
    monkeypatch.setattr(FakeTriton, "stops", 0)
    monkeypatch.setattr(FakeTriton, "failures", failures)
    monkeypatch.setattr(FakeTriton, "text", text)
    monkeypatch.setattr(FakeSession, "closed", 0)
    monkeypatch.setattr(pytriton.triton, "Triton", FakeTriton)
    monkeypatch.setattr(server_module, "open_sessions", lambda artifact, opts: [FakeSession(), FakeSession()])
    monkeypatch.setattr(server_module, "check_socket_paths", lambda opts: None)
    monkeypatch.setattr(server_module.libpython, "check", lambda *a: libpython.LibpythonStatus(None, None, None))
    logs: list[str] = []
    srv = server_module.Server(
        "unused", ServeOptions(http_port=free_port(), grpc_port=free_port(), fix_libpython=False), log=logs.append
    )
    if started:
        srv.start()
        assert FakeTriton.runs == failures + 1 and FakeTriton.stops == failures and FakeSession.closed == 0
        assert sum("handshake race" in line for line in logs) == failures
        srv.stop()
        assert FakeSession.closed == 2
    else:
        with pytest.raises(ServeError) as err:
            srv.start()
        race = server_module.lost_start_up_handshake(text)
        assert FakeTriton.runs == (server_module.START_ATTEMPTS if race else 1) and FakeSession.closed == 2
        assert ("fewer --instances" in str(err.value)) == race


@pytest.mark.parametrize(
    "key, value",
    [("timeout_s", 0), ("timeout_s", -1.0), ("timeout_s", float("nan")), ("retry_s", -1.0), ("retry_s", float("inf"))],
)
def test_client_timeouts_are_checked_before_any_request(key, value):
    """A zero/negative/NaN timeout was reported as 'cannot reach Triton' or 'Deadline Exceeded' at the
    first call, and in run_load a bad retry_s killed every worker thread, leaving an empty report."""
    port = free_port()
    with pytest.raises(ConfigError, match=f"{key} must be a number of seconds"):
        SegmentationClient(f"127.0.0.1:{port}", "http", **{key: value})
    with pytest.raises(ConfigError, match=f"{key} must be a number of seconds"):
        run_load(
            f"127.0.0.1:{port}",
            "grpc",
            clients=1,
            requests_per_client=1,
            images=[np.zeros((8, 8, 3), np.uint8)],
            **{key: value},
        )
