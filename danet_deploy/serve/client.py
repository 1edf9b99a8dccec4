"""A small Triton client for the served model: image in, mask out, over HTTP or gRPC.

Uses ``tritonclient`` (the field's client, no hand-rolled protocol). Connection failures are
retried until ``retry_s`` runs out, with a fresh connection each time, so a client rides out a
server restart; a request the server *answers* with an error (wrong shape, dtype, ...) is never
retried, it raises :class:`~danet_deploy.errors.ServeError` with Triton's message.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, ServeError
from .address import parse_address
from .server import INPUT_NAME, OUTPUT_NAME

PROTOCOLS = ("http", "grpc")
# Triton answers these while a (re)started server is still loading the model: worth retrying.
_NOT_READY = (
    "unknown model",
    "is not found",
    "is not ready",
    "unavailable",
    "failed to connect",
    "connection refused",
    "socket closed",
    "connection reset",
    "broken pipe",
)


def _module(protocol: str) -> Any:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} must be http or grpc")
    try:
        if protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
    except ImportError as exc:
        raise BackendUnavailableError(
            "the Triton client needs tritonclient: pip install 'danet-deploy[serve]'"
        ) from exc
    return module


def split_url(url: str, protocol: str | None = None) -> tuple[str, str]:
    """``http://host:port`` / ``grpc://host:port`` / ``host:port`` (+ ``protocol``) -> (protocol, host:port).

    The address is checked by :func:`~danet_deploy.serve.address.parse_address` before tritonclient
    sees it (a bad port or an unbracketed IPv6 address made it print tracebacks on every retry).
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        if protocol and protocol != scheme:
            raise ConfigError(f"URL {url!r} says {scheme} but protocol {protocol!r} was asked for")
        protocol, url = scheme, rest
    protocol = protocol or "http"
    _module(protocol)
    return protocol, str(parse_address(url.rstrip("/"), f"Triton {protocol} address"))


def _retryable(exc: BaseException) -> bool:
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        text = f"{exc.status()} {exc.message()}".lower()
        return any(marker in text for marker in _NOT_READY)
    return isinstance(exc, (OSError, EOFError)) or type(exc).__module__.startswith(("gevent", "geventhttpclient"))


@dataclass
class CallResult:
    mask: np.ndarray
    seconds: float  # wall time of the successful attempt
    retries: int


class SegmentationClient:
    """``client.segment(image) -> mask`` against a danet-serve (or any Triton with the same IO)."""

    def __init__(
        self,
        url: str,
        protocol: str | None = None,
        model_name: str = "danet",
        timeout_s: float = 60.0,
        retry_s: float = 0.0,
    ) -> None:
        # checked here: a zero, negative or NaN timeout surfaced as "cannot reach Triton" or a deadline
        # exceeded at the first call, which blames the server for the argument
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ConfigError(f"timeout_s must be a number of seconds > 0, got {timeout_s!r}")
        if not (isinstance(retry_s, (int, float)) and math.isfinite(retry_s) and retry_s >= 0):
            raise ConfigError(f"retry_s must be a number of seconds >= 0 (0: no retries), got {retry_s!r}")
        self.protocol, self.url = split_url(url, protocol)
        self.module = _module(self.protocol)
        self.model_name, self.timeout_s, self.retry_s = model_name, timeout_s, retry_s
        self._client: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            if self.protocol == "http":
                self._client = self.module.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
            else:
                self._client = self.module.InferenceServerClient(self.url)
        return self._client

    def _reset(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):  # a dead connection may fail to close; it is dropped either way
                self._client.close()
            self._client = None

    def ready(self) -> bool:
        """Server live and the model ready (False, not an error, while it is down or loading)."""
        try:
            client = self._connect()
            return bool(client.is_server_ready() and client.is_model_ready(self.model_name))
        except Exception:
            self._reset()
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise ServeError(
                    f"no ready model {self.model_name!r} at {self.protocol}://{self.url} after "
                    f"{timeout_s:.0f} s; is danet-serve running there?"
                )
            time.sleep(0.25)

    def call(self, image: np.ndarray) -> CallResult:
        """Send one HxWx3 uint8 image; the mask, the time it took and how many retries it needed."""
        from tritonclient.utils import InferenceServerException

        batch = np.ascontiguousarray(image)[None]
        deadline = time.monotonic() + self.retry_s
        retries = 0
        while True:
            start = time.perf_counter()
            try:
                client = self._connect()
                tensor = self.module.InferInput(INPUT_NAME, list(batch.shape), _triton_dtype(batch.dtype))
                tensor.set_data_from_numpy(batch)
                output = self.module.InferRequestedOutput(OUTPUT_NAME)
                kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
                result = client.infer(self.model_name, [tensor], outputs=[output], **kwargs)
                mask = result.as_numpy(OUTPUT_NAME)
                return CallResult(mask=mask[0], seconds=time.perf_counter() - start, retries=retries)
            except Exception as exc:
                if not _retryable(exc) or time.monotonic() > deadline:
                    self._reset()
                    if isinstance(exc, InferenceServerException):
                        raise ServeError(f"Triton at {self.protocol}://{self.url}: {exc.message()}") from exc
                    raise ServeError(f"cannot reach Triton at {self.protocol}://{self.url}: {exc!r}") from exc
                self._reset()
                retries += 1
                time.sleep(min(1.0, 0.1 * 2 ** min(retries, 4)))  # back off: a restarting server needs its CPU

    def segment(self, image: np.ndarray) -> np.ndarray:
        return self.call(image).mask

    def batch_counts(self) -> dict[int, int]:
        """Executions per batch size the server has run for this model (Triton's statistics)."""
        client = self._connect()
        if self.protocol == "http":
            stats = client.get_inference_statistics(self.model_name)
        else:
            stats = client.get_inference_statistics(self.model_name, as_json=True)
        counts: dict[int, int] = {}
        for model in stats.get("model_stats", []):
            for entry in model.get("batch_stats", []):
                size = int(entry.get("batch_size", 0))
                counts[size] = counts.get(size, 0) + int(entry.get("compute_infer", {}).get("count", 0))
        return counts

    def close(self) -> None:
        self._reset()

    def __enter__(self) -> SegmentationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _triton_dtype(dtype: np.dtype) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(dtype)
