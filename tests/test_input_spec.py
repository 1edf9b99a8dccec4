"""A backend's InputSpec comes from the manifest's ``input`` record (name and shape from the loaded
graph win), giving what the section's JSON gave before the records."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from danet_deploy.manifest_sections import InputInfo
from danet_deploy.runtime.backends.base import InputSpec

_dim = st.integers(1, 64) | st.sampled_from(["batch", "height", "width"])
_bound = st.none() | st.lists(st.integers(1, 64), min_size=4, max_size=4)
_sections = st.fixed_dictionaries(
    {"shape": st.lists(_dim, min_size=4, max_size=4)},
    optional={
        "name": st.text(max_size=6),
        "dtype": st.sampled_from(["float32", "float16"]),
        "min_shape": _bound,
        "opt_shape": _bound,
        "max_shape": _bound,
    },
)
_graph_shape = st.lists(st.none() | st.integers(-1, 64) | st.just("dynamic") | st.just("N"), min_size=4, max_size=4)


def _from_json(spec: dict[str, Any]) -> InputSpec:
    """What InputSpec.from_manifest made of the section's JSON before it took the record."""

    def opt(key: str) -> tuple[int, ...] | None:
        return tuple(spec[key]) if spec.get(key) else None

    return InputSpec(
        name=spec.get("name", "input"),
        shape=tuple(d if isinstance(d, int) and d > 0 else None for d in spec["shape"]),
        dtype=spec.get("dtype", "float32"),
        min_shape=opt("min_shape"),
        max_shape=opt("max_shape"),
        opt_shape=opt("opt_shape"),
        layout=spec.get("layout", "NCHW"),
    )


@settings(max_examples=60, deadline=None)
@given(_sections, st.text(min_size=1, max_size=6), _graph_shape)
def test_the_spec_from_the_record_is_the_spec_from_its_json(section, name, shape):
    info = InputInfo.from_dict(section)
    assert InputSpec.from_manifest(info, name=name, shape=shape) == _from_json(
        {**section, "name": name, "shape": shape}
    )
    assert InputSpec.from_manifest(info) == _from_json(section)
