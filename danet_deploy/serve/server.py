"""``danet-serve``: any artifact, through :mod:`danet_deploy.runtime`, on a real Triton server (PyTriton).

PyTriton ships the ``tritonserver`` binary with its Python backend and runs it CPU-only where
there is no GPU. Triton does the serving work (HTTP and gRPC endpoints, health and readiness,
the dynamic batcher with its queue delay, statistics); each model instance is one runtime
:class:`~danet_deploy.runtime.Session` with its own threads, so ``instances x threads`` is the
CPU budget. The served model takes what a camera has and returns what a robot needs:

* input ``image``: ``UINT8 [-1, -1, 3]`` RGB (any size; the session resizes to a static engine),
* output ``mask``: ``UINT8 [-1, -1]`` class indices at the image's size (152 MiB of float
  logits per 1024x2048 frame never cross the network).

Requests of the same size are batched by Triton up to ``max_batch_size``; the session runs a
batch as one tensor on a dynamic-batch artifact and image by image on a static one.
SIGTERM and SIGINT stop the server cleanly (in-flight requests finish within ``exit_timeout_s``).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, DanetDeployError, ServeError, summarize_exception
from ..outputs import mask_dtype
from ..request_fields import arg
from . import libpython
from .address import MAX_PORT
from .triton_model import CLIENT_ERROR_MARK, LIMITS_FILE, image_problem

INPUT_NAME = "image"
OUTPUT_NAME = "mask"
MODEL_VERSION = 1
START_ATTEMPTS = 3
# Triton logs this error line at every start: PyTriton loads the model through Triton's load API with
# its config as an override, which has no config file whose modification time Triton could record
# (it uses the current time). Harmless, and explained in the log after it.
CONFIG_MTIME_LINE = "Failed to set config modification time: model_config_content_name_ is empty"
# How PyTriton's multi-instance start-up handshake is lost: every instance after the first
# polls for the first one's Unix socket, gives up after 1 s, or connects in the instant between
# that socket's bind() and listen() and is refused. Both fail the model load; a new start wins.
HANDSHAKE_STEP = "get_config_from_handshake_server"
HANDSHAKE_LOSSES = ("Timeout occurred while waiting for config file", "ConnectionRefusedError")


def lost_start_up_handshake(text: str) -> bool:
    """True when a failed model load is PyTriton's instance start-up race (worth a new start)."""
    return HANDSHAKE_LOSSES[0] in text or (HANDSHAKE_STEP in text and HANDSHAKE_LOSSES[1] in text)


def _backend_option(name: str | tuple[tuple[str, Any], ...] | None) -> tuple[tuple[str, Any], ...]:
    """``--backend NAME`` -> the runtime's ``backend=NAME`` option (none when not given)."""
    return (("backend", name),) if isinstance(name, str) and name else tuple(name or ())


@dataclass(frozen=True)
class ServeArtifact:
    """The positional argument of ``danet-serve`` (its flags are :class:`ServeOptions`)."""

    artifact: str = arg(
        help="artifact folder written by danet-export (or a Triton repository version folder)",
        positional=True,
        required=True,
    )


@dataclass(frozen=True)
class ServeOptions:
    """How ``danet-serve`` runs; defaults bind loopback only.

    Attributes:
        host: address HTTP and gRPC bind to (``0.0.0.0`` to serve other machines).
        http_port, grpc_port: Triton's endpoints; metrics_port: Prometheus metrics (off if None).
        model_name: the name clients address.
        instances: model instances (one runtime session each) Triton runs in parallel.
        threads: intra-op threads per instance (default: CPU cores / instances).
        max_batch_size: largest batch the dynamic batcher forms (1: every request runs alone).
        max_queue_delay_us: how long a request may wait for others to join its batch.
        max_image_side: larger images are refused (a request cannot exhaust the server's memory).
        exit_timeout_s: how long shutdown waits for in-flight requests.
        fix_libpython: put the interpreter's LIBDIR first on LD_LIBRARY_PATH for the server.
        backend_options: extra options for :func:`danet_deploy.runtime.load` (e.g. ``device``).

    Each field's :func:`~danet_deploy.request_fields.arg` is its ``danet-serve`` flag (the CLI is
    generated from them); ``fix_libpython``'s flag, ``--keep-ld-library-path``, turns it off.
    """

    host: str = arg("127.0.0.1", "address to bind (0.0.0.0 serves other machines)")
    http_port: int = arg(8000, "Triton HTTP port")
    grpc_port: int = arg(8001, "Triton gRPC port")
    metrics_port: int | None = arg(None, "Prometheus metrics port (off unless given)")
    model_name: str = arg("danet", "name clients address")
    instances: int = arg(2, "model instances (one runtime session each)")
    threads: int | None = arg(None, "threads per instance (default: CPU cores / instances)")
    max_batch_size: int = arg(8, "largest batch the dynamic batcher forms")
    max_queue_delay_us: int = arg(2000, "how long a request waits for a batch")
    max_image_side: int = arg(4096, "refuse larger images")
    exit_timeout_s: int = arg(
        10, "seconds shutdown waits for in-flight requests", flag="--exit-timeout", metavar="EXIT_TIMEOUT"
    )
    fix_libpython: bool = arg(
        True, "do not put this interpreter's libpython folder first on LD_LIBRARY_PATH", flag="--keep-ld-library-path"
    )
    backend_options: tuple[tuple[str, Any], ...] = arg(
        (),
        "runtime backend override (e.g. openvino for an ONNX artifact)",
        flag="--backend",
        metavar="BACKEND",
        convert=_backend_option,
    )

    def __post_init__(self) -> None:
        # PyTriton builds its own URLs as http://HOST:PORT: an IPv6 address breaks them (a traceback
        # from inside PyTriton), and an empty host binds every interface in the port check.
        if not self.host or ":" in self.host or self.host != self.host.strip():
            raise ConfigError(
                f"host {self.host!r} must be an IPv4 address or host name of this machine "
                "(127.0.0.1: this machine only, 0.0.0.0: every interface); PyTriton cannot serve on "
                "IPv6 addresses"
            )
        ports = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p is not None]
        if any(not 0 < p <= MAX_PORT for p in ports):
            raise ConfigError(f"ports must be 1..{MAX_PORT}, got {ports}")
        if len(set(ports)) != len(ports):
            raise ConfigError(f"HTTP, gRPC and metrics ports must differ, got {ports}")
        for key in ("instances", "max_image_side", "exit_timeout_s"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.max_batch_size < 1 or self.max_queue_delay_us < 0:
            raise ConfigError("max_batch_size must be >= 1 (1: no batching) and max_queue_delay_us >= 0")

    @property
    def threads_per_instance(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.instances)


def require_pytriton() -> None:
    try:
        import pytriton  # noqa: F401 imported only to see that it is installed
    except ImportError as exc:
        raise BackendUnavailableError(
            "danet-serve needs PyTriton: pip install 'danet-deploy[serve]' (nvidia-pytriton "
            "pins numpy<2; keep it in its own environment if other tools need numpy 2)"
        ) from exc


def ensure_port_free(host: str, port: int) -> None:
    """Fail fast with a clear message: Triton itself only logs a bind failure and exits.

    Only a port in use is blamed on another server; a host that does not resolve or is not an
    address of this machine (the same bind failure) is named as the problem instead.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(
                    f"cannot listen on {host}:{port} ({reason}); another server uses it: pick other "
                    "--http-port/--grpc-port or stop that server"
                ) from None
            if exc.errno == errno.EACCES:
                raise ServeError(
                    f"cannot listen on {host}:{port} ({reason}): ports below 1024 need root; pick a "
                    "port of 1024 or above"
                ) from None
            raise ServeError(
                f"cannot listen on {host}:{port} ({reason}): --host must be an address of this "
                "machine (127.0.0.1: this machine only, 0.0.0.0: every interface)"
            ) from None


UNIX_PATH_MAX = 107  # bytes of a Unix socket path on Linux (sun_path is 108 with the NUL)


def check_socket_paths(options: ServeOptions) -> None:
    """PyTriton talks to its model instances over Unix sockets in ``$PYTRITON_HOME/workspace_*``;
    a longer path than Linux allows made requests hang with no error, so refuse it up front."""
    from pytriton.constants import PYTRITON_HOME

    longest = Path(PYTRITON_HOME) / "workspace_xxxxxxxx" / f"{options.model_name}_0_{options.instances - 1}-server.sock"
    if len(os.fsencode(str(longest))) > UNIX_PATH_MAX:
        raise ServeError(
            f"PyTriton's workspace {PYTRITON_HOME} is too deep for its Unix sockets ({longest} is longer "
            f"than {UNIX_PATH_MAX} bytes): set PYTRITON_HOME to a shorter folder, e.g. /tmp/pytriton"
        )


def make_infer(session: Any, max_image_side: int, mask_type: Any = np.uint8) -> Callable[..., dict[str, np.ndarray]]:
    """The inference callable of one model instance: a batch of uint8 images -> a batch of masks.

    Bad input raises PyTriton's bad-parameter error marked with
    :data:`~danet_deploy.serve.triton_model.CLIENT_ERROR_MARK`: the model file Triton runs
    (:mod:`danet_deploy.serve.triton_model`) answers it as INVALID_ARGUMENT with that one line;
    the instance and the server stay up.
    """
    from pytriton.decorators import batch
    from pytriton.exceptions import PyTritonBadParameterError

    def refuse(reason: str) -> PyTritonBadParameterError:
        return PyTritonBadParameterError(CLIENT_ERROR_MARK + " ".join(reason.split()))

    @batch
    def infer(image: np.ndarray) -> dict[str, np.ndarray]:
        if image.ndim != 4 or image.shape[-1] != 3:
            raise refuse(f"{INPUT_NAME} must be HxWx3 uint8 RGB per request, got {image.shape[1:]}")
        problem = image_problem(image.shape, INPUT_NAME, max_image_side)
        if problem:
            raise refuse(problem)
        try:
            # the contract is RGB; an --accept bgr8 artifact takes its images in BGR
            masks = session.run(session.from_rgb(list(image)))
        except DanetDeployError as exc:
            raise refuse(str(exc)) from exc
        # the declared output type (uint8 up to 255 classes): an older artifact's mask may differ
        return {OUTPUT_NAME: np.stack(masks).astype(mask_type, copy=False)}

    return infer


def proxy_files_with_checks(files: dict[str, bytes], version: int, max_image_side: int) -> dict[str, bytes]:
    """PyTriton's model files for Triton's load API (``file:<version>/<name>`` -> bytes) with
    :mod:`~danet_deploy.serve.triton_model` in front of its proxy model: PyTriton's ``model.py``
    becomes ``pytriton_model.py``, ours takes its name, and the limits file goes beside them."""
    key = f"file:{version}/model.py"
    if key not in files:
        raise ServeError(
            f"PyTriton sends no {key} to Triton; this PyTriton version serves models differently from "
            "0.7 (pip install 'nvidia-pytriton==0.7.*')"
        )
    files = dict(files)
    files[f"file:{version}/pytriton_model.py"] = files.pop(key)
    files[key] = Path(__file__).with_name("triton_model.py").read_bytes()
    files[f"file:{version}/{LIMITS_FILE}"] = json.dumps(
        {"input": INPUT_NAME, "max_image_side": max_image_side}
    ).encode()
    return files


def add_request_checks(triton: Any, model_name: str, max_image_side: int) -> None:
    """Make the model ``triton`` has bound send :func:`proxy_files_with_checks`'s files when it loads.

    PyTriton 0.7 offers no hook for this: the bound model (in ``Triton._model_manager``) is given a
    wrapped ``get_proxy_model_files``, the call that gathers the files its load request carries.
    (Writing the repository to disk for Triton to load at start-up instead turned a lost start-up
    handshake into a server exit noticed only after PyTriton's 120 s readiness wait.)
    """
    models = [
        m
        for m in getattr(getattr(triton, "_model_manager", None), "models", ())
        if getattr(m, "model_name", None) == model_name
    ]
    if len(models) != 1 or not callable(getattr(models[0], "get_proxy_model_files", None)):
        raise ServeError(
            "cannot find the bound model in PyTriton's model manager; this PyTriton version differs "
            "from 0.7 (pip install 'nvidia-pytriton==0.7.*')"
        )
    model, gather = models[0], models[0].get_proxy_model_files
    model.get_proxy_model_files = lambda: proxy_files_with_checks(gather(), model.model_version, max_image_side)


def open_sessions(artifact: str | Path, options: ServeOptions) -> list[Any]:
    """One runtime session per instance (each owns its threads and buffers: no locks between them)."""
    from .. import runtime

    sessions = []
    try:
        for _ in range(options.instances):
            sessions.append(
                runtime.load(artifact, threads=options.threads_per_instance, **dict(options.backend_options))
            )
    except BaseException:
        for session in sessions:
            session.close()
        raise
    return sessions


class Server:
    """A running PyTriton server over runtime sessions; ``with Server(...) as s: s.wait()``."""

    def __init__(self, artifact: str | Path, options: ServeOptions, log: Callable[[str], None] = print) -> None:
        require_pytriton()
        self.artifact, self.options, self.log = artifact, options, log
        self.sessions: list[Any] = []
        self.triton: Any = None
        self._stop = threading.Event()

    # -- start -----------------------------------------------------------------------------
    def start(self) -> Server:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

        opts = self.options
        if opts.fix_libpython:
            libdir = libpython.with_libdir_first(os.environ)
            if libdir:
                self.log(
                    f"LD_LIBRARY_PATH starts with {libdir} (this interpreter's libpython) so Triton's Python "
                    "backend loads the same libpython"
                )
        status = libpython.check()
        if not status.ok:
            raise ServeError(status.explain())
        for port in (opts.http_port, opts.grpc_port, opts.metrics_port):
            if port is not None:
                ensure_port_free(opts.host, port)
        check_socket_paths(opts)
        self.sessions = open_sessions(self.artifact, opts)
        first = self.sessions[0]
        mask_type = np.dtype(mask_dtype(first.num_classes))
        config = TritonConfig(
            http_address=opts.host,
            http_port=opts.http_port,
            grpc_address=opts.host,
            grpc_port=opts.grpc_port,
            allow_metrics=opts.metrics_port is not None,
            metrics_port=opts.metrics_port,
            metrics_address=opts.host if opts.metrics_port else None,
            exit_timeout_secs=opts.exit_timeout_s,
            log_verbose=0,
        )
        # PyTriton restricts statistics by default; keep them readable so clients can see the batching.
        security = TritonSecurityConfig(restricted_endpoints=["shared-memory", "model-repository", "trace", "logging"])
        batcher = DynamicBatcher(max_queue_delay_microseconds=opts.max_queue_delay_us)
        model = dict(
            model_name=opts.model_name,
            model_version=MODEL_VERSION,
            infer_func=[make_infer(session, opts.max_image_side, mask_type) for session in self.sessions],
            inputs=[Tensor(name=INPUT_NAME, dtype=np.uint8, shape=(-1, -1, 3))],
            outputs=[Tensor(name=OUTPUT_NAME, dtype=mask_type.type, shape=(-1, -1))],
            config=ModelConfig(max_batch_size=opts.max_batch_size, batcher=batcher),
            strict=True,
        )
        for attempt in range(1, START_ATTEMPTS + 1):
            self.triton = Triton(config=config, security_config=security)
            try:
                self.triton.bind(**model)
                add_request_checks(self.triton, opts.model_name, opts.max_image_side)
                self.triton.run()
                break
            except Exception as exc:
                self._stop_triton()
                text = str(exc)
                race = lost_start_up_handshake(text)
                if race and attempt < START_ATTEMPTS:
                    self.log(
                        f"model instances lost PyTriton's start-up handshake race (attempt {attempt} of "
                        f"{START_ATTEMPTS}); starting again"
                    )
                    continue
                self.stop()
                hint = libpython.explain_failure(text)
                if hint is None and race:
                    hint = (
                        f"the model instances lost PyTriton's start-up handshake {START_ATTEMPTS} times; the "
                        "machine is overloaded: try fewer --instances"
                    )
                raise ServeError(hint or f"Triton failed to start: {summarize_exception(exc)}") from exc
        desc = first.describe()
        self.log(
            f"serving {self.artifact} as {opts.model_name!r}: HTTP {opts.host}:{opts.http_port}, gRPC "
            f"{opts.host}:{opts.grpc_port}; {opts.instances} instance(s) x {opts.threads_per_instance} thread(s) "
            f"on {desc.get('backend')}; dynamic batching up to {opts.max_batch_size} "
            f"(max queue delay {opts.max_queue_delay_us} us)"
        )
        self.log(
            f'Triton\'s error line "{CONFIG_MTIME_LINE}" above is harmless: PyTriton loads the model through '
            "Triton's load API with its config as an override, which has no file to time-stamp"
        )
        return self

    # -- run / stop ------------------------------------------------------------------------
    def wait(self, poll_s: float = 1.0) -> None:
        """Block until :meth:`request_stop` (SIGTERM/SIGINT) or the server dies; then stop."""
        try:
            while not self._stop.wait(poll_s):
                if not self.triton.is_alive():
                    raise ServeError("the Triton server exited unexpectedly; see its log above")
        finally:
            self.stop()

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the server cleanly (main thread only)."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def _stop_triton(self) -> None:
        if self.triton is not None:
            try:
                self.triton.stop()
            finally:
                self.triton = None

    def stop(self) -> None:
        self._stop_triton()
        for session in self.sessions:
            session.close()
        self.sessions = []

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(artifact: str | Path, options: ServeOptions, log: Callable[[str], None] = print) -> None:
    """Start, block until SIGTERM/SIGINT, stop: what ``danet-serve`` runs."""
    server = Server(artifact, options, log=log)
    server.install_signal_handlers()
    server.start()
    log("ready")
    server.wait()
    log("stopped")


__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ServeOptions", "Server", "add_request_checks", "make_infer", "serve"]
