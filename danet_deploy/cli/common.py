"""Helpers every console script shares: size parsing, error reporting, exit codes."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import DanetDeployError
from ..request_fields import parse_size

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "HelpFormatter", "cli_main", "parse_size", "print_json"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` that states each flag's default once.

    argparse's ArgumentDefaultsHelpFormatter appends "(default: None)" after help that already
    says what the default is ("(default: the preset's) (default: None)") and shows nothing for a
    flag without help; this one appends a default only when it says something (not None, a bool: the flag
    turns it around, or empty) and the help does not already mention one. The epilog's tables keep their lines.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is argparse.SUPPRESS
            or default is None
            or isinstance(default, bool)
            or default in ([], ())
            or "default" in text.lower()
        ):
            return text
        return f"{text} (default: %(default)s)"


class CommandMain(Protocol):
    """A console command's ``main``: ``argv`` defaults to ``sys.argv[1:]``, the result is the exit code."""

    def __call__(self, argv: list[str] | None = None) -> int: ...


def cli_main(func: Callable[[list[str] | None], int]) -> CommandMain:
    """Turn :class:`DanetDeployError` into ``error: ...`` on stderr and exit code 2.

    An ``ImportError`` of a package an extra provides (torch on a runtime-only install, say) is
    reported the same way, naming the extra (:func:`~danet_deploy.extras.missing_extra`): every
    command's import path ends here, so none of them shows a traceback for a missing extra.
    """

    @functools.wraps(func)
    def wrapper(argv: list[str] | None = None) -> int:
        from ..extras import missing_extra
        from ..util.artifact_dir import terminate_as_exit

        try:
            with terminate_as_exit():  # SIGTERM unwinds, so scratch folders are removed
                return func(argv)
        except DanetDeployError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ImportError as exc:
            error = missing_extra(exc, "danet-" + func.__module__.rpartition(".")[2].replace("_", "-"))
            if error is None:
                raise
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
