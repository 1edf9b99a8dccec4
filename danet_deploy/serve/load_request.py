"""A load test of a danet-serve (or Triton) endpoint, as ``danet-client`` runs it: the request and the run.

``load_test(LoadTestRequest(http="127.0.0.1:8000", grpc="", clients=(1, 4)))`` is
``danet-client --grpc '' --clients 1,4``: generated street scenes from concurrent clients
(:func:`.loadtest.run_load`), with ``artifact`` every response compared with the same artifact
run in-process. Every argument is checked when the request is made, before any scene is rendered.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..request_fields import arg, parse_size
from .loadtest import LoadReport


def parse_counts(text: str) -> list[int]:
    """``"1,2,4"`` -> client counts (each >= 1)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of client counts") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"client counts must be positive, got {text!r}")
    return values


@dataclass(frozen=True)
class LoadTestRequest:
    """What ``danet-client`` was asked (the CLI is generated from these fields); checked when made."""

    http: str = arg("127.0.0.1:8000", "HTTP endpoint HOST:PORT or [IPv6]:PORT ('' to skip)")
    grpc: str = arg("127.0.0.1:8001", "gRPC endpoint HOST:PORT or [IPv6]:PORT ('' to skip)")
    model_name: str = arg("danet", "served model name (danet-serve --model-name)")
    clients: tuple[int, ...] = arg((1, 2, 4), "concurrent clients, e.g. 1,2,4 (default: 1,2,4)", parser=parse_counts)
    requests: int = arg(25, "requests per client")
    duration: float = arg(60.0, "stop each run after this many seconds")
    size: tuple[int, int] = arg((256, 256), "generated scene size (default: 256x256)", parser=parse_size, metavar="HxW")
    scenes: int = arg(8, "distinct generated scenes")
    artifact: str | None = arg(None, "compare every mask with this artifact run in-process")
    warmup: int = arg(2, "requests sent before measuring")
    wait: float = arg(30.0, "seconds to wait for the server to be ready")
    as_json: bool = arg(False, "print the report as JSON", flag="--json")

    def __post_init__(self) -> None:
        from ..data.scenes import MAX_SCENE_PIXELS, SCENE_LIMIT_TEXT

        object.__setattr__(self, "clients", tuple(self.clients))
        self.endpoints()  # an address that does not parse fails here
        if self.requests < 1 or self.scenes < 1 or not (math.isfinite(self.duration) and self.duration > 0):
            raise ConfigError("--requests, --scenes and --duration must be positive")
        if self.warmup < 0:  # a negative count sliced the scenes from the end: all but a few were sent as warm-up
            raise ConfigError(f"--warmup must be a number of requests >= 0, got {self.warmup}")
        if not (math.isfinite(self.wait) and self.wait >= 0):
            raise ConfigError(f"--wait must be a number of seconds >= 0, got {self.wait}")
        if self.size[0] * self.size[1] > MAX_SCENE_PIXELS:  # each scene is rendered in memory, several at once
            raise ConfigError(
                f"--size {self.size[0]}x{self.size[1]} is above the generated scenes' limit of "
                f"{SCENE_LIMIT_TEXT}; choose a smaller --size"
            )

    def endpoints(self) -> list[tuple[str, str]]:
        """``(protocol, url)`` of each endpoint given (at least one)."""
        from .address import parse_address

        endpoints = [
            (proto, str(parse_address(url, f"--{proto}")))
            for proto, url in (("http", self.http), ("grpc", self.grpc))
            if url
        ]
        if not endpoints:
            raise ConfigError("give --http and/or --grpc")
        return endpoints


@dataclass
class LoadTestResult:
    """One report per endpoint and client count; ``failed`` when any request failed, a run completed none
    (it verified nothing), or a mask differed from the in-process artifact's."""

    request: LoadTestRequest
    reports: list[LoadReport]
    compared: bool

    @property
    def idle(self) -> list[LoadReport]:
        return [r for r in self.reports if r.requests == 0]

    @property
    def failed(self) -> bool:
        return (
            bool(self.idle)
            or any(r.errors for r in self.reports)
            or (self.compared and any(r.exact != r.requests for r in self.reports))
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.request.size),
            "artifact": self.request.artifact,
            "runs": [r.to_dict() for r in self.reports],
        }

    def text(self) -> str:
        from .loadtest import HEADER

        r = self.request
        title = f"scenes {r.size[0]}x{r.size[1]}, {r.requests} requests per client, at most {r.duration:g} s per run"
        return "\n".join([title, HEADER, *(report.row() for report in self.reports)])

    def problems(self, errors: bool = True) -> list[str]:
        """For stderr: the first errors of each run (``errors``: the JSON has them all), and each run that
        completed nothing."""
        lines = [f"error: {error}" for report in self.reports for error in report.errors[:3]] if errors else []
        lines += [
            f"error: {report.protocol} with {report.clients} client(s) completed no request within --duration "
            f"{self.request.duration:g} s; give a longer --duration"
            for report in self.idle
            if not report.errors
        ]
        return lines


def load_test(request: LoadTestRequest) -> LoadTestResult:
    """Warm each endpoint up, then one :func:`.loadtest.run_load` per endpoint and client count."""
    from .client import SegmentationClient
    from .loadtest import generated_images, run_load

    endpoints = request.endpoints()
    images = generated_images(request.scenes, request.size)
    references = None
    if request.artifact:
        from .. import runtime

        with runtime.load(request.artifact) as session:
            references = [session.run(session.from_rgb(img)) for img in images]
    reports = []
    for proto, url in endpoints:
        with SegmentationClient(url, proto, model_name=request.model_name) as client:
            client.wait_ready(request.wait)
            for img in images[: request.warmup]:
                client.segment(img)
        for clients in request.clients:
            reports.append(
                run_load(
                    url,
                    proto,
                    clients,
                    request.requests,
                    images,
                    references,
                    duration_s=request.duration,
                    model_name=request.model_name,
                )
            )
    return LoadTestResult(request, reports, references is not None)
