"""Contracts every registered target and engine keeps (timm-style: the cases come from the registry).

"A new target is one module and one registration": these tests hold a new entry to what the rest
of the package assumes, without anyone adding it to a hand-written list. Two layers:

* declarations (fast, no export): names, suffixes, precisions, calibration methods, options,
  requirements and pip extras agree with each other and with pyproject; the named builders and
  backend classes import where their requirements are installed;
* round trip (one tiny danet_demo export per target): the artifact passes the manifest's checks
  (format, file hashes, paths inside the folder), loads through the engine its manifest names and
  returns a mask of the input's size. Entries whose packages are missing are skipped, naming them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from danet_deploy.errors import ConfigError
from danet_deploy.targets.options import TargetOptions
from danet_deploy.targets.registry import (
    CALIB_METHODS,
    PRECISIONS,
    Engine,
    Target,
    engine_names,
    engines,
    get_engine,
    resolve,
    targets,
)

ROOT = Path(__file__).resolve().parent.parent
TARGETS = targets()
ENGINES = engines()
EMITS = ("logits", "mask", "both", "mask-lowres")
SIZE = (64, 64)


def _extras_named_by(entry: Target | Engine) -> tuple[set[str], set[str]]:
    """(the pip extras ``entry.extra`` names, the extras pyproject declares)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    return set(filter(None, entry.extra.split(","))), declared


def _skip_unless_installed(entry: Target | Engine, what: str) -> None:
    missing = [r for r in entry.requires if not r.installed()]
    if missing:
        pytest.skip(f"{what} {entry.name!r} needs {', '.join(r.pip for r in missing)} (not installed here)")


# -- declarations: engines ------------------------------------------------------------------------------


def test_engine_names_are_unique_and_exactly_one_is_the_reference():
    assert len(set(engine_names())) == len(ENGINES)
    assert [e.name for e in ENGINES if e.reference] == ["torch"]
    assert all(e.runs_presets for e in ENGINES if e.reference)


def test_no_two_engines_open_the_same_suffix():
    suffixes = [s for e in ENGINES for s in e.suffixes]
    assert len(suffixes) == len(set(suffixes)), suffixes


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_engine_declaration_is_consistent(engine: Engine):
    assert re.fullmatch(r"[a-z][a-z0-9-]*", engine.name) and engine.label
    assert re.fullmatch(r"[\w.]+:\w+", engine.implementation)
    assert all(s.startswith(".") and s == s.lower() for s in engine.suffixes)
    assert engine.weights_suffix is None or engine.weights_suffix not in engine.suffixes
    assert all(r.module and r.pip for r in engine.requires)
    assert not engine.requires or engine.extra, "an engine with requirements names the extra that installs them"
    if engine.triton is not None:  # Triton loads the engine's own model file
        assert Path(engine.triton.model_file).suffix in engine.suffixes
        assert engine.triton.config_field in ("platform", "backend")
        assert engine.triton.instance_kind in ("cpu", "gpu", "any")
        assert not (engine.needs_gpu and engine.triton.instance_kind == "cpu")


@pytest.mark.parametrize("entry", [*TARGETS, *ENGINES], ids=lambda e: f"{type(e).__name__.lower()}-{e.name}")
def test_the_pip_extra_an_entry_names_exists(entry: Target | Engine):
    named, declared = _extras_named_by(entry)
    assert named <= declared, f"{entry.name}: extra {sorted(named - declared)} is not in pyproject"


def _backend_class(engine: Engine) -> type:
    """The engine's backend class; its module imports its library lazily, so this needs none of it."""
    from danet_deploy.runtime.backends.base import backend_class

    return backend_class(engine.name)


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_engine_backend_class_imports_and_refuses_unknown_options(engine: Engine):
    _skip_unless_installed(engine, "engine")
    from danet_deploy.runtime.backends.base import Backend

    cls = _backend_class(engine)
    assert issubclass(cls, Backend)
    names = cls.option_names()
    assert len(names) == len(set(names)) and "model_file" not in names and "manifest" not in names
    cls.parse_options({})
    with pytest.raises(ConfigError, match="no option 'no_such_option'"):
        cls.parse_options({"no_such_option": 1})


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_engine_declares_an_options_dataclass_parsed_like_target_options(engine: Engine):
    """Every engine's options are a frozen dataclass of :class:`EngineOptions` with help on each
    field; its defaults parse; an unknown option or a badly typed value is a :class:`ConfigError`
    naming the option (and, for an unknown one, the valid ones). Needs only the backend module
    (libraries are imported when a backend is constructed), so engines whose packages are missing
    are checked too."""
    import dataclasses

    from danet_deploy.runtime.backends.base import EngineOptions

    try:
        cls = _backend_class(engine)
    except ImportError as exc:  # a plugin backend whose module imports its library eagerly
        pytest.skip(f"engine {engine.name!r}: its backend module does not import here ({exc})")
    options = cls.options_class
    assert dataclasses.is_dataclass(options) and issubclass(options, EngineOptions)
    assert options.__dataclass_params__.frozen, "parsed options are a record: frozen"
    assert isinstance(cls.parse_options(None), options) and cls.parse_options({}) == options()
    assert cls.option_names() == [f.name for f in dataclasses.fields(options)]
    for name, _, _, help_text in options.describe():
        assert help_text, f"option {name!r} of engine {engine.name} has no help"
    with pytest.raises(ConfigError) as unknown:
        cls.parse_options({"threadz": 1})
    text = str(unknown.value)
    assert f"the {engine.name} backend has no option 'threadz'" in text and "did you mean 'threads'" in text
    assert all(name in text for name in cls.option_names()), "the message lists the valid options"
    with pytest.raises(ConfigError, match="option threads must be an integer, got 'abc'"):
        cls.parse_options({"threads": "abc"})
    assert cls.parse_options({"threads": "2"}).threads == 2  # a command line's text and Python's int agree
    for field in dataclasses.fields(options):  # every field refuses a value its type cannot read
        bad = _badly_typed(field.type)
        if bad is not None:
            with pytest.raises(ConfigError, match=f"option {field.name}\\b"):
                cls.parse_options({field.name: bad})


def _badly_typed(annotation: object) -> object:
    """A value the parser must refuse for a field of this (string) annotation, or ``None``."""
    text = str(annotation)
    if text.startswith("int") or text.startswith("float"):
        return "not-a-number"
    if text.startswith("bool"):
        return "maybe"
    if text.startswith("dict"):
        return [1]
    if text.startswith("tuple[str"):
        return 123
    return None


# -- declarations: targets ------------------------------------------------------------------------------


def test_target_names_are_unique_and_every_artifact_engine_is_registered():
    assert len({t.name for t in TARGETS}) == len(TARGETS)
    for target in TARGETS:
        if target.builder is not None:  # a conversion target (triton) writes a repository, not an artifact
            assert target.engine in engine_names(), target.name
    # every runtime engine but the ones that run presets directly has a target that exports for it
    exported = {t.engine for t in TARGETS}
    assert {e.name for e in ENGINES if not e.runs_presets} <= exported


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_target_declaration_is_consistent(target: Target):
    assert re.fullmatch(r"[a-z][a-z0-9-]*", target.name) and target.summary
    assert target.precisions and set(target.precisions) <= set(PRECISIONS)
    assert set(target.calib_methods) <= set(CALIB_METHODS)
    if target.calib_methods:
        assert "int8" in target.precisions
    elif target.builder is not None:
        assert "int8" not in target.precisions, "an INT8 export needs a calibration method"
    assert target.builder is not None or target.from_builder is not None, "a target builds or converts"
    for spec in (target.builder, target.from_builder):
        assert spec is None or re.fullmatch(r"[\w.]+:\w+", spec)
    assert all(s.startswith(".") and s == s.lower() for s in target.suffixes)
    assert target.mask_dtype in ("uint8", "int32")
    assert target.emits and set(target.emits) <= set(EMITS) and "logits" in target.emits
    assert all(r.module and r.pip for r in target.requires)
    if target.builder is not None:  # its primary file is one its engine opens
        assert set(target.suffixes) & set(get_engine(target.engine).suffixes)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_target_options_parse_their_defaults_and_refuse_unknown_keys(target: Target):
    cls = target.options_class
    assert issubclass(cls, TargetOptions)
    assert isinstance(target.parse_options(None), cls)
    assert isinstance(target.parse_options({}), cls)
    with pytest.raises(ConfigError):
        target.parse_options({"no_such_option": "1"})
    for name, _, _, help_text in cls.describe():
        assert name and help_text, f"option {name!r} of {target.name} has no help"


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_target_builders_import_where_their_requirements_are_installed(target: Target):
    _skip_unless_installed(target, "target")
    if target.builder is not None:
        assert callable(target.load_builder())
    else:
        with pytest.raises(ConfigError, match="--from"):
            target.check_buildable()
    if target.from_builder is not None:
        assert callable(resolve(target.from_builder, target.name))


# -- round trip: export a tiny model with every target, load it through its engine ---------------------

BUILDABLE = [t for t in TARGETS if t.builder is not None]


def _precision(target: Target) -> str:
    """The cheapest precision the target writes (INT8 calibrates: last)."""
    return next(p for p in ("fp32", "fp16", "int8") if p in target.precisions)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, demo_artifact_64):
    """``target name -> artifact folder`` of danet_demo at 64x64, each exported once per session
    (the FP32 ONNX one is the suite's shared artifact)."""
    from danet_deploy.export import ExportRequest, export

    cache: dict[str, Path] = {}

    def get(target: Target) -> Path:
        if target.name not in cache:
            if target.name == "onnx":
                cache[target.name] = demo_artifact_64
            else:
                out = tmp_path_factory.mktemp(f"contract-{target.name}") / "art"
                cache[target.name], _ = export(
                    ExportRequest(
                        "danet_demo", target=target.name, precision=_precision(target), input_size=SIZE, output=out
                    ),
                    log=lambda _: None,
                )
        return cache[target.name]

    return get


def _round_trip_params() -> list:
    return [pytest.param(t, id=t.name, marks=() if t.name == "onnx" else pytest.mark.slow) for t in BUILDABLE]


@pytest.mark.parametrize("target", _round_trip_params())
def test_every_target_exports_an_artifact_its_engine_runs(target: Target, exported):
    _skip_unless_installed(target, "target")
    from danet_deploy import runtime
    from danet_deploy.manifest import artifact_path, read_manifest

    folder = exported(target)
    manifest = read_manifest(folder, verify=True)  # format version, schema, sha256 of every file
    assert manifest.target == target.name and manifest.precision == _precision(target)
    assert Path(manifest.primary).suffix in target.suffixes
    for name in manifest.files:
        assert artifact_path(folder, name, "file").is_file()
    engine = get_engine(manifest.backend)
    _skip_unless_installed(engine, "engine")
    if engine.needs_gpu:
        pytest.skip(f"engine {engine.name!r} needs an NVIDIA GPU")
    image = np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    with runtime.load(folder) as session:
        mask = session.run(image)
        assert mask.shape == SIZE and np.issubdtype(mask.dtype, np.integer)
        assert mask.min() >= 0 and mask.max() < manifest.num_classes


@pytest.mark.parametrize("target", [t for t in TARGETS if t.builder is None], ids=lambda t: t.name)
def test_every_conversion_target_turns_an_artifact_into_its_form(target: Target, tmp_path, demo_artifact_64):
    """Targets without a builder (``--from ARTIFACT``) convert the shared ONNX artifact."""
    _skip_unless_installed(target, "target")
    out = tmp_path / target.name
    result = resolve(target.from_builder, target.name)(
        demo_artifact_64, out, target.parse_options({}), force=False, log=lambda _: None
    )
    assert result is not None and out.exists()
    assert any(any(out.rglob(f"*{suffix}")) for suffix in target.suffixes), (target.name, sorted(out.rglob("*")))
