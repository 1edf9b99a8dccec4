"""Check that every TensorRT Python API name danet-deploy uses exists in given TensorRT bindings.

Why: TensorRT cannot be imported without NVIDIA's libraries and a GPU, but its bindings wheels
(``tensorrt-cu12-bindings`` / ``tensorrt-cu13-bindings``, ~1.3 MB) download from PyPI, and their
``tensorrt.so`` holds every pybind11-registered name as a C string. So API drift between
TensorRT 10 and 11 can be caught on any machine:

1. ``ast`` over danet-deploy's TensorRT modules collects what the code uses, qualified by owner
   where the code shows it: ``trt.BuilderFlag.INT8`` -> ``BuilderFlag.INT8``, ``config.set_flag``
   -> ``IBuilderConfig.set_flag`` (known variable names), overrides in subclasses of ``trt.*``
   classes -> ``IInt8EntropyCalibrator2.get_batch``. Names guarded by ``hasattr``/3-argument
   ``getattr`` are *optional* (the code has a version-specific path for them).
2. Class-qualified lookup (x86-64 wheels, which keep their symbol table): pybind11 registers each
   enum value by calling ``pybind11::enum_<nvinfer1::X>::value("NAME", ...)``, and many methods
   through ``class_<nvinfer1::X>::def*``. The script finds every ``lea`` that loads an identifier
   string from ``.rodata`` and the first ``call`` after it; when the call's target symbol is such
   a member function, the name is registered *on X*. For an enum this is exhaustive, so
   ``BuilderFlag.INT8`` is missing in 11.x even though ``DataType.INT8`` keeps the string "INT8".
3. Everything else falls back to the bare name: as a whole string, or as the tail of one
   (linkers merge ``"INT8"`` into ``"UINT8"``). Docstring mentions do not count.

What it proves: each name exists in that bindings build (enum values: on that enum; methods and
properties found qualified: on that class; the rest: somewhere). What it cannot prove: argument
types and counts, return types, behaviour, properties that are read-only, or that a bare-name
method belongs to the object the code calls it on. Only running on TensorRT proves those.

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
import struct
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = [
    "danet_deploy/export/tensorrt_build.py",
    "danet_deploy/runtime/backends/tensorrt.py",
    "danet_deploy/tensorrt/compat.py",
    "danet_deploy/tensorrt/logger.py",
]
# variable / attribute names that hold TensorRT objects in those modules -> their Python class
RECEIVERS = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "parser": "OnnxParser",
    "config": "IBuilderConfig",
    "opt_profile": "IOptimizationProfile",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "runtime": "Runtime",
    "logger": "Logger",
    "_logger": "Logger",
    "inspector": "IEngineInspector",
}
TRT_ALIASES = {"trt"}
# dict/tuple constants whose upper-case strings are members of a TensorRT enum used through getattr or
# compared with ``.name``: constant -> (owner, optional)
CONSTANTS = {
    "PRECISION_FLAGS": ("BuilderFlag", True),
    "LEVELS": ("Logger", False),
    "_NUMPY_DTYPES": ("DataType", False),
}
# Python class name -> the C++ class (or nested enum) pybind11 registers it from
CPP_OWNERS = {
    "Builder": ("IBuilder",),
    "Runtime": ("IRuntime",),
    "OnnxParser": ("IParser",),
    "Logger": ("ILogger", "Severity"),
}


@dataclass
class Usage:
    """Names the code uses: ``"Owner.member"`` where the owner is known, else the bare name."""

    required: dict[str, set[str]] = field(default_factory=dict)  # name -> where
    optional: dict[str, set[str]] = field(default_factory=dict)

    def add(self, name: str, where: str, optional: bool = False) -> None:
        if name.rsplit(".", 1)[-1].startswith("__"):
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


def _receiver_class(node: ast.AST) -> str | None:
    """The TensorRT class of a known variable or ``self.<known>``, else ``None``."""
    if isinstance(node, ast.Name):
        return RECEIVERS.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return RECEIVERS.get(node.attr)
    return None


def _is_receiver(node: ast.AST) -> bool:
    """A TensorRT object: a known variable, ``self.<known>``, or the result of a call on one."""
    if _receiver_class(node):
        return True
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "self":
            return False
        return _is_trt(node.value) or _is_receiver(node.value)
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Attribute) and (_is_receiver(node.func.value) or _is_trt(node.func.value))
    return False


def _owner(node: ast.AST) -> str | None:
    """``trt`` -> "" (module level), ``trt.X`` -> "X", a known receiver -> its class, else ``None``."""
    if _is_trt(node):
        return ""
    if isinstance(node, ast.Attribute) and _is_trt(node.value):
        return node.attr
    return _receiver_class(node)


def _qualify(owner: str | None, name: str) -> str:
    return f"{owner}.{name}" if owner else name


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
                if (
                    is_guard
                    and isinstance(name, ast.Constant)
                    and isinstance(name.value, str)
                    and (_is_trt(target) or _is_receiver(target))
                ):
                    key = _qualify(_owner(target), name.value)
                    guarded.add(key)
                    usage.add(key, f"{rel}:{node.lineno}", optional=True)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name) and t.id in CONSTANTS and node.value is not None:
                        enum, optional = CONSTANTS[t.id]
                        for const in ast.walk(node.value):
                            if (
                                isinstance(const, ast.Constant)
                                and isinstance(const.value, str)
                                and const.value.isupper()
                            ):
                                usage.add(f"{enum}.{const.value}", f"{rel}:{node.lineno}", optional=optional)
            if isinstance(node, ast.Attribute) and (_is_trt(node.value) or _is_receiver(node.value)):
                key = _qualify(_owner(node.value), node.attr)
                usage.add(key, f"{rel}:{node.lineno}", optional=key in guarded)
            if isinstance(node, ast.ClassDef):
                bases = [b for b in node.bases if isinstance(b, ast.Attribute) and _is_trt(b.value)]
                for base in bases:
                    optional = base.attr in guarded
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):  # ours if "_"
                            usage.add(
                                f"{base.attr}.{item.name}",
                                f"{rel}:{item.lineno} ({base.attr} override)",
                                optional=optional,
                            )
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


# -- class-qualified names from the x86-64 code: lea "name" ... call pybind11::enum_<X>::value -------
_LEA_RIP = re.compile(rb"[\x48\x4c]\x8d[\x05\x0d\x15\x1d\x25\x2d\x35\x3d]", re.S)  # lea r64, [rip+disp32]
_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*\Z")
CALL_WINDOW = 64  # bytes after the lea in which the registering call must start


@dataclass
class Registry:
    """Members seen registered on each C++ owner, and which owners are enums (exhaustive)."""

    members: dict[str, set[str]] = field(default_factory=dict)
    enums: set[str] = field(default_factory=set)
    available: bool = False
    reason: str = ""


def _sections(data: bytes) -> dict[str, tuple[int, int, int, int]]:
    """ELF64 little-endian section headers: name -> (address, offset, size, link)."""
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQI", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    out = {}
    for name, _type, _flags, addr, offset, size, link in headers:
        end = data.index(b"\0", names_at + name)
        out[data[names_at + name : end].decode()] = (addr, offset, size, link)
    out["__headers__"] = headers  # type: ignore[assignment]
    return out


def owner_of_symbol(symbol: str) -> tuple[str, str] | None:
    """``("enum"|"class", "BuilderFlag")`` for a mangled ``pybind11::enum_<nvinfer1::BuilderFlag>::...``."""
    match = re.match(r"_ZN8pybind11(6class_|5enum_)I", symbol)
    if not match:
        return None
    kind, rest = ("enum" if match.group(1) == "5enum_" else "class"), symbol[match.end() :]
    nested, i, names = rest.startswith("N"), int(rest.startswith("N")), []
    while i < len(rest) and rest[i].isdigit():
        j = i
        while j < len(rest) and rest[j].isdigit():
            j += 1
        length = int(rest[i:j])
        names.append(rest[j : j + length])
        i = j + length
        if not nested:
            break
    if not names or (nested and rest[i : i + 1] != "E"):
        return None
    return kind, names[-1]


_DOC_SYMBOL = re.compile(r"_ZN8tensorrt(\d+)")


def doc_member_of_symbol(symbol: str) -> tuple[str, str] | None:
    """``("IExecutionContext", "execute_async_v3")`` for the docstring constant
    ``tensorrt::IExecutionContextDoc::execute_async_v3`` (mangled ``_ZN8tensorrt20IExecutionContextDocL16execute_async_v3E``).

    The bindings keep one such constant per documented member of a class, named after the
    class: evidence that the member is bound on that class, not merely a string somewhere.
    """
    match = _DOC_SYMBOL.match(symbol)
    if not match:
        return None
    i = match.end()
    length = int(match.group(1))
    scope = symbol[i : i + length]
    i += length
    if not scope.endswith("Doc") or len(scope) == 3:
        return None
    if symbol[i : i + 1] == "L":  # internal linkage
        i += 1
    digits = re.match(r"\d+", symbol[i:])
    if not digits:
        return None
    i += digits.end()
    member = symbol[i : i + int(digits.group())]
    if len(member) != int(digits.group()) or symbol[i + len(member) : i + len(member) + 1] != "E":
        return None
    return scope[:-3], member


def registry(data: bytes) -> Registry:
    """Which identifiers the code registers on which pybind11 ``class_``/``enum_`` (x86-64 ELF only)."""
    reg = Registry()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        reg.reason = "not a 64-bit little-endian ELF"
        return reg
    if struct.unpack_from("<H", data, 0x12)[0] != 62:
        reg.reason = "not x86-64 code (the lea/call pattern is x86-64 only)"
        return reg
    sections = _sections(data)
    if not all(k in sections for k in (".text", ".rodata", ".symtab")):
        reg.reason = "no symbol table (stripped) or no .text/.rodata"
        return reg
    headers = sections.pop("__headers__")  # type: ignore[arg-type]
    _, sym_off, sym_size, sym_link = sections[".symtab"]
    names_at = headers[sym_link][4]
    owners: dict[int, tuple[str, str]] = {}
    for pos in range(sym_off, sym_off + sym_size, 24):
        st_name, st_info, _other, _shndx, st_value, _size = struct.unpack_from("<IBBHQQ", data, pos)
        if st_info & 0xF == 1 and st_name:  # data: docstring constants name their class and member
            end = data.index(b"\0", names_at + st_name)
            documented = doc_member_of_symbol(data[names_at + st_name : end].decode("ascii", "replace"))
            if documented:
                reg.members.setdefault(documented[0], set()).add(documented[1])
            continue
        if st_info & 0xF != 2 or not st_value:  # functions only
            continue
        end = data.index(b"\0", names_at + st_name)
        owner = owner_of_symbol(data[names_at + st_name : end].decode("ascii", "replace"))
        if owner:
            owners[st_value] = owner
    text_addr, text_off, text_size, _ = sections[".text"]
    ro_addr, ro_off, ro_size, _ = sections[".rodata"]
    text = data[text_off : text_off + text_size]
    for match in _LEA_RIP.finditer(text):
        pos = match.start()
        target = text_addr + pos + 7 + struct.unpack_from("<i", text, pos + 3)[0]
        if not ro_addr <= target < ro_addr + ro_size:
            continue
        start = ro_off + target - ro_addr
        end = data.find(b"\0", start, start + 128)
        if end < 0 or not _IDENT.match(data[start:end]):
            continue
        for call in range(pos + 7, min(pos + 7 + CALL_WINDOW, len(text) - 5)):
            if text[call] != 0xE8:
                continue
            owner = owners.get(text_addr + call + 5 + struct.unpack_from("<i", text, call + 1)[0])
            if owner:
                kind, name = owner
                reg.members.setdefault(name, set()).add(data[start:end].decode())
                if kind == "enum":
                    reg.enums.add(name)
                break
    reg.available = bool(reg.enums)
    if not reg.available:
        reg.reason = "no pybind11 enum registrations found"
    return reg


def lookup(name: str, strings: set[str], tails: list[str], reg: Registry | None = None) -> str | None:
    """``"qualified"``, ``"bare"`` (exact or tail string only) or ``None`` (missing)."""
    owner, _, member = name.rpartition(".")
    if owner and reg is not None and reg.available:
        candidates = CPP_OWNERS.get(owner, (owner,))
        if any(member in reg.members.get(c, ()) for c in candidates):
            return "qualified"
        if member.isupper() and any(c in reg.enums for c in candidates):
            return None  # every value of a pybind11 enum goes through enum_<X>::value: absent here means absent
    if member in strings:
        return "bare"
    if any(s.endswith(member) and len(s) > len(member) for s in tails):
        return "bare"
    return None


def check(usage: Usage, binaries: list[tuple[str, bytes]]) -> dict:
    report: dict = {
        "modules": MODULES,
        "required": sorted(usage.required),
        "optional": sorted(usage.optional),
        "wheels": {},
    }
    for version, data in binaries:
        strings = binary_strings(data)
        tails = [s for s in strings if len(s) < 80 and " " not in s]  # identifiers, not docstrings
        reg = registry(data)
        entry: dict = {
            "missing_required": {},
            "missing_optional": [],
            "found": 0,
            "qualified": [],
            "bare": [],
            "qualification": "class-qualified where registered" if reg.available else f"bare names only ({reg.reason})",
        }
        for name, where in sorted(usage.required.items()):
            how = lookup(name, strings, tails, reg)
            if how:
                entry["found"] += 1
                entry[how].append(name)
            else:
                entry["missing_required"][name] = sorted(where)
        for name in sorted(usage.optional):
            how = lookup(name, strings, tails, reg)
            if how:
                entry["found"] += 1
                entry[how].append(name)
            else:
                entry["missing_optional"].append(name)
        report["wheels"][version] = entry
    return report


CUDA_MODULES = [
    "danet_deploy/tensorrt/cuda.py",
    "danet_deploy/runtime/backends/tensorrt.py",
    "danet_deploy/export/tensorrt_build.py",
]


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
            # self.cudart.X or cudart.X
            if (isinstance(base, ast.Attribute) and base.attr == "cudart") or (
                isinstance(base, ast.Name) and base.id == "cudart"
            ):
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
    parser.add_argument(
        "--cuda-bindings",
        type=Path,
        metavar="WHEEL",
        help="also check the cuda-python runtime names against a cuda-bindings wheel",
    )
    args = parser.parse_args(argv)
    usage = collect([ROOT / m for m in MODULES])
    report = check(usage, [load_binary(p) for p in args.binaries])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{len(usage.required)} required and {len(usage.optional)} optional TensorRT names used in "
            f"{len(MODULES)} modules"
        )
        for version, entry in report["wheels"].items():
            status = "OK" if not entry["missing_required"] else "DRIFT"
            print(
                f"TensorRT {version}: {status} ({entry['qualification']}); found {entry['found']} "
                f"({len(entry['qualified'])} on their class/enum, {len(entry['bare'])} by bare name only), "
                f"missing required {sorted(entry['missing_required']) or 'none'}, missing optional (guarded) "
                f"{entry['missing_optional'] or 'none'}"
            )
            for name, where in entry["missing_required"].items():
                print(f"    {name}: used at {', '.join(where)}")
    failed = any(e["missing_required"] for e in report["wheels"].values())
    if args.cuda_bindings:
        missing = check_cuda_bindings(args.cuda_bindings)
        used = collect_cudart([ROOT / m for m in CUDA_MODULES])
        print(
            f"cuda-bindings {args.cuda_bindings.name.split('-')[1]}: {'OK' if not missing else 'DRIFT'}; "
            f"{len(used) - len(missing)} of {len(used)} cudart names found"
            + "".join(f"\n    {name}: used at {', '.join(where)}" for name, where in missing.items())
        )
        failed = failed or bool(missing)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
