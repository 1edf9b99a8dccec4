"""``danet-run``: masks and overlay PNGs for images, or an overlay video + per-frame records for a
video file or camera, with any artifact (or a reference preset).

Parsing only: the flags are generated from :class:`danet_deploy.segment.RunRequest`, and
:func:`danet_deploy.segment.run` does the work (:func:`~danet_deploy.segment.segment_images` for images).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..segment import RunRequest, run
from . import dataclass_args
from .common import EXIT_OK, cli_main


def build_parser() -> argparse.ArgumentParser:
    return dataclass_args.build_parser(RunRequest, "danet-run", __doc__.split("\n\n")[0])


@cli_main
def main(argv: list[str] | None = None) -> int:
    result = run(dataclass_args.parse_request(RunRequest, build_parser(), argv))
    if isinstance(result, dict):  # a video, camera or bag run: its summary (images print as they go)
        print(json.dumps(result))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(None))
