#!/usr/bin/env python3
"""Check that every TensorRT Python API name danet-deploy uses exists in given TensorRT bindings.

Why: TensorRT cannot be imported without NVIDIA's libraries and a GPU, but its bindings wheels
(``tensorrt-cu12-bindings`` / ``tensorrt-cu13-bindings``, ~1.3 MB) download from PyPI, and their
``tensorrt.so`` holds every pybind11-registered name (classes, methods, properties, enum members)
as a C string. So API drift between TensorRT 10 and 11 can be caught on any machine:

1. ``ast`` over danet-deploy's TensorRT modules collects ``trt.X.Y`` chains, attributes and methods
   used on TensorRT objects (builder, network, config, engine, context, ...), methods overridden in
   subclasses of ``trt.*`` classes, and names guarded by ``hasattr``/3-argument ``getattr`` (those
   are *optional*: the code has a version-specific path for them).
2. Each name is looked for in the binary's strings: as a whole string, or as the tail of one
   (linkers merge ``"INT8"`` into ``"UINT8"``). Docstring mentions do not count.

Usage::

    pip download --no-deps -d wheels tensorrt-cu12-bindings==10.16.1.11 tensorrt-cu13-bindings==11.4.0.106
    python scripts/check_tensorrt_api.py wheels/*.whl

    # and the cuda-python runtime calls of the backend:
    pip download --no-deps -d cuda "cuda-bindings==12.9.*"
    python scripts/check_tensorrt_api.py wheels/*.whl --cuda-bindings cuda/cuda_bindings-*.whl

Exit code 1 if a required (unguarded) name is missing from any wheel; optional names missing are
listed but expected (e.g. ``BuilderFlag.FP16`` and ``IInt8EntropyCalibrator2`` in TensorRT 11).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["danet_deploy/export/tensorrt_build.py", "danet_deploy/runtime/backends/tensorrt.py",
           "danet_deploy/tensorrt/compat.py"]
# variable / attribute names that hold TensorRT objects in those modules
RECEIVERS = {"builder", "network", "parser", "config", "opt_profile", "engine", "context", "runtime", "logger"}
TRT_ALIASES = {"trt"}
# dict constants whose string values are TensorRT enum members used through getattr (optional)
OPTIONAL_CONSTANTS = {"PRECISION_FLAGS": "BuilderFlag"}


@dataclass
class Usage:
    required: dict[str, set[str]] = field(default_factory=dict)  # name -> where
    optional: dict[str, set[str]] = field(default_factory=dict)

    def add(self, name: str, where: str, optional: bool = False) -> None:
        if name.startswith("__"):
            return  # dunders (__version__, __init__) live in Python code, not in the binary
        (self.optional if optional else self.required).setdefault(name, set()).add(where)

    def finish(self) -> None:
        for name in list(self.required):
            if name in self.optional:  # guarded somewhere: the code copes with its absence
                self.optional[name] |= self.required.pop(name)


def _is_trt(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in TRT_ALIASES
    return isinstance(node, ast.Attribute) and node.attr in TRT_ALIASES and isinstance(node.value, ast.Name)


def _is_receiver(node: ast.AST) -> bool:
    """A TensorRT object: a known variable, ``self.<known>``, or the result of a call on one."""
    if isinstance(node, ast.Name):
        return node.id in RECEIVERS
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "self":
            return node.attr in RECEIVERS
        return _is_trt(node.value) or _is_receiver(node.value)
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Attribute) and (_is_receiver(node.func.value) or _is_trt(node.func.value))
    return False


def collect(paths: list[Path]) -> Usage:
    usage = Usage()
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        guarded: set[str] = set()
        for node in ast.walk(tree):  # first pass: every hasattr / 3-argument getattr guard in the module
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) >= 2:
                target, name = node.args[0], node.args[1]
                is_guard = node.func.id == "hasattr" or (node.func.id == "getattr" and len(node.args) == 3)
                if is_guard and isinstance(name, ast.Constant) and isinstance(name.value, str) \
                        and (_is_trt(target) or _is_receiver(target)):
                    guarded.add(name.value)
                    usage.add(name.value, f"{rel}:{node.lineno}", optional=True)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id in OPTIONAL_CONSTANTS for t in targets):
                    for const in ast.walk(node.value):
                        if isinstance(const, ast.Constant) and isinstance(const.value, str) and const.value.isupper():
                            usage.add(const.value, f"{rel}:{node.lineno}", optional=True)
            if isinstance(node, ast.Attribute) and (_is_trt(node.value) or _is_receiver(node.value)):
                usage.add(node.attr, f"{rel}:{node.lineno}", optional=node.attr in guarded)
            if isinstance(node, ast.ClassDef):
                bases = [b for b in node.bases if isinstance(b, ast.Attribute) and _is_trt(b.value)]
                for base in bases:
                    optional = base.attr in guarded
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef):
                            usage.add(item.name, f"{rel}:{item.lineno} ({base.attr} override)", optional=optional)
    usage.finish()
    return usage


def binary_strings(data: bytes, minimum: int = 2) -> set[str]:
    return {m.decode("ascii") for m in re.findall(rb"[\x20-\x7e]{%d,}" % minimum, data)}


def load_binary(path: Path) -> tuple[str, bytes]:
    """``(version, tensorrt.so bytes)`` from a bindings wheel or a bare ``.so``."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            names = [n for n in wheel.namelist() if re.search(r"tensorrt[^/]*/tensorrt[^/]*\.so$", n)]
            if not names:
                raise SystemExit(f"{path}: no tensorrt*.so inside; pass a tensorrt-cu1x-bindings wheel")
            version = path.name.split("-")[1]
            return version, wheel.read(names[0])
    return path.stem, path.read_bytes()


def lookup(name: str, strings: set[str], tails: list[str]) -> str | None:
    if name in strings:
        return "exact"
    if any(s.endswith(name) and len(s) > len(name) for s in tails):
        return "tail"
    return None


def check(usage: Usage, binaries: list[tuple[str, bytes]]) -> dict:
    report: dict = {"modules": MODULES, "required": sorted(usage.required), "optional": sorted(usage.optional),
                    "wheels": {}}
    for version, data in binaries:
        strings = binary_strings(data)
        tails = [s for s in strings if len(s) < 80 and " " not in s]  # identifiers, not docstrings
        entry = {"missing_required": {}, "missing_optional": [], "found": 0}
        for name, where in sorted(usage.required.items()):
            if lookup(name, strings, tails):
                entry["found"] += 1
            else:
                entry["missing_required"][name] = sorted(where)
        for name in sorted(usage.optional):
            if lookup(name, strings, tails):
                entry["found"] += 1
            else:
                entry["missing_optional"].append(name)
        report["wheels"][version] = entry
    return report


CUDA_MODULES = ["danet_deploy/tensorrt/cuda.py", "danet_deploy/runtime/backends/tensorrt.py",
                "danet_deploy/export/tensorrt_build.py"]


def collect_cudart(paths: list[Path]) -> dict[str, set[str]]:
    """``cudart.X`` (and ``cudart.X.Y``) names used through cuda-python's runtime bindings."""
    used: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            base = node.value
            if isinstance(base, ast.Attribute) and base.attr == "cudart":  # self.cudart.X
                used.setdefault(node.attr, set()).add(f"{rel}:{node.lineno}")
            elif isinstance(base, ast.Name) and base.id == "cudart":
                used.setdefault(node.attr, set()).add(f"{rel}:{node.lineno}")
            elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "cudart":
                used.setdefault(node.attr, set()).add(f"{rel}:{node.lineno}")  # cudart.Enum.member
    return used


def check_cuda_bindings(wheel: Path) -> dict[str, list[str]]:
    """Names from :func:`collect_cudart` missing from a cuda-bindings wheel's ``runtime`` module."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if re.search(r"cuda/bindings/runtime[^/]*\.so$", n)]
        if not names:
            raise SystemExit(f"{wheel}: no cuda/bindings/runtime*.so inside; pass a cuda-bindings (>= 12.6) wheel")
        strings = binary_strings(archive.read(names[0]))
    words = set()
    for text in strings:
        words.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    used = collect_cudart([ROOT / m for m in CUDA_MODULES])
    return {name: sorted(where) for name, where in sorted(used.items()) if name not in words}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binaries", nargs="+", type=Path, help="tensorrt-cu1x-bindings wheels or tensorrt*.so files")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--cuda-bindings", type=Path, metavar="WHEEL",
                        help="also check the cuda-python runtime names against a cuda-bindings wheel")
    args = parser.parse_args(argv)
    usage = collect([ROOT / m for m in MODULES])
    report = check(usage, [load_binary(p) for p in args.binaries])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{len(usage.required)} required and {len(usage.optional)} optional TensorRT names used in "
              f"{len(MODULES)} modules")
        for version, entry in report["wheels"].items():
            status = "OK" if not entry["missing_required"] else "DRIFT"
            print(f"TensorRT {version}: {status}; found {entry['found']}, missing required "
                  f"{sorted(entry['missing_required']) or 'none'}, missing optional (guarded) "
                  f"{entry['missing_optional'] or 'none'}")
            for name, where in entry["missing_required"].items():
                print(f"    {name}: used at {', '.join(where)}")
    failed = any(e["missing_required"] for e in report["wheels"].values())
    if args.cuda_bindings:
        missing = check_cuda_bindings(args.cuda_bindings)
        used = collect_cudart([ROOT / m for m in CUDA_MODULES])
        print(f"cuda-bindings {args.cuda_bindings.name.split('-')[1]}: {'OK' if not missing else 'DRIFT'}; "
              f"{len(used) - len(missing)} of {len(used)} cudart names found"
              + "".join(f"\n    {name}: used at {', '.join(where)}" for name, where in missing.items()))
        failed = failed or bool(missing)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
