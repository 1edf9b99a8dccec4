"""mkdocs hook: the docs' target and engine tables, written from the registry at build time.

Why: ``danet_deploy.targets`` is the one place that knows each target and engine; a hand-written
table in the docs would drift from it. ``<!-- targets-table -->`` and ``<!-- engines-table -->`` in
a page are replaced by the tables (torch-free: the registry imports only the standard library).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _registry() -> Any:
    if str(ROOT) not in sys.path:  # the checkout's package, installed or not
        sys.path.insert(0, str(ROOT))
    from danet_deploy import targets

    return targets


def _extras(extra: str) -> str:
    return " + ".join(f"`[{x}]`" for x in extra.split(",") if x) or "-"


def targets_table() -> str:
    """One row per ``danet-export --target``: precisions, engine, files, pip extra, summary."""
    rows = [
        "| target | precisions | runs on engine | files | pip extra | what it writes |",
        "|---|---|---|---|---|---|",
    ]
    for t in _registry().targets():
        rows.append(
            f"| `{t.name}` | {', '.join(t.precisions)} | `{t.engine}` | {', '.join(f'`{s}`' for s in t.suffixes)} "
            f"| {_extras(t.extra)} | {t.summary} |"
        )
    return "\n".join(rows)


def engines_table() -> str:
    """One row per runtime engine (``runtime.load(..., backend=NAME)``, ``danet-bench`` rows)."""
    rows = ["| engine | what | opens bare files | pip extra | notes |", "|---|---|---|---|---|"]
    for e in _registry().engines():
        notes = [
            n
            for n, on in (
                ("the reference (FP32 yardstick)", e.reference),
                ("runs presets directly", e.runs_presets),
                ("needs an NVIDIA GPU", e.needs_gpu),
                (f"served natively by Triton ({e.triton.name})" if e.triton else "", bool(e.triton)),
            )
            if on
        ]
        rows.append(
            f"| `{e.name}` | {e.label} | {', '.join(f'`{s}`' for s in e.suffixes) or '-'} | {_extras(e.extra)} "
            f"| {'; '.join(notes) or '-'} |"
        )
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    if "<!-- targets-table -->" in markdown:
        markdown = markdown.replace("<!-- targets-table -->", targets_table())
    if "<!-- engines-table -->" in markdown:
        markdown = markdown.replace("<!-- engines-table -->", engines_table())
    return markdown
