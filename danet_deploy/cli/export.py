"""``danet-export``: one command, every target and precision; writes an artifact folder + manifest.

Parsing only: the flags are generated from :class:`danet_deploy.export.ExportRequest` and
:class:`danet_deploy.export.command.ExportFlags`; the work is in :mod:`danet_deploy.export.command`.
"""

from __future__ import annotations

import argparse
import sys

from ..export.command import (
    ExportFlags,
    default_target,
    export_and_verify,
    export_from,
    models_listing,
    options_listing,
)
from ..export.pipeline import ExportRequest
from ..targets.registry import TargetTable
from . import dataclass_args
from .common import EXIT_FAILED, EXIT_OK, cli_main, print_json


def build_parser() -> argparse.ArgumentParser:
    return dataclass_args.build_parser(
        ExportRequest,
        "danet-export",
        __doc__.split("\n")[0],
        "targets:\n"
        + TargetTable.current().text()
        + "\n\nper-target options: danet-export --list-options [--target NAME]",
        also=(ExportFlags,),
    )


@cli_main
def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    flags = ExportFlags(**dataclass_args.request_values(ExportFlags, ns))
    if flags.list_targets or flags.list_options or flags.list_models:
        print(
            TargetTable.current().text()
            if flags.list_targets
            else options_listing(ns.target)
            if flags.list_options
            else models_listing()
        )
        return EXIT_OK
    values = dataclass_args.request_values(ExportRequest, ns)
    values["options"] = flags.with_shortcuts(values["options"])
    values["calib"] = flags.calib_dir or values["calib"]
    if flags.from_artifact:
        result = export_from(
            flags.from_artifact,
            ns.target or default_target(),
            values["output"],
            values["options"],
            force=values["force"],
        )
        if flags.as_json and hasattr(result, "to_dict"):
            print_json(result.to_dict())
        else:
            print(result)
        return EXIT_OK
    outcome = export_and_verify(ExportRequest(**values), flags.verify_images)
    if flags.as_json:
        print_json(outcome.to_dict())
    else:
        print(outcome.line())
    return EXIT_OK if outcome.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main(None))
