"""Serving at scale: Triton model repositories, a PyTriton server and a load-testing client.

Sits above :mod:`danet_deploy.runtime` (beside ``bench``): the repository writer reads only
manifests, the server runs artifacts through the runtime, the client needs only ``tritonclient``.
The server and client need the ``serve`` extra (``nvidia-pytriton``, ``tritonclient``); the
repository writer needs nothing beyond the runtime.
"""

from __future__ import annotations

from .repository import (
    TritonOptions,
    TritonRepository,
    parse_config,
    read_triton_repository,
    render_config,
    write_triton_repository,
)

__all__ = [
    "TritonOptions",
    "TritonRepository",
    "parse_config",
    "read_triton_repository",
    "render_config",
    "write_triton_repository",
]
