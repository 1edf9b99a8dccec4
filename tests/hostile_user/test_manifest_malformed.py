"""Hand-edited manifests: JSON that is not an object, or fields of the wrong type, are a
ManifestError from the runtime and exit code 2 from danet-run, never a traceback."""

from __future__ import annotations

import pytest

from hostile_user.hostile_support import (
    copy_artifact,
    edit_manifest,
    run_cli,
    write_image,
)

pytest.importorskip("onnxruntime")

from danet_deploy import runtime
from danet_deploy.errors import ManifestError


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "null", "3"])
def test_manifest_that_is_not_a_json_object_is_refused(artifact, tmp_path, content, capsys):
    art = copy_artifact(artifact, tmp_path / "art")
    (art / "manifest.json").write_text(content)
    with pytest.raises(ManifestError, match="not an object"):
        runtime.load(art)
    assert run_cli("run", ["--model", str(art), str(write_image(tmp_path / "i.png")), "-o", str(tmp_path / "o")]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "field,value",
    [
        ("files", None),
        ("files", []),
        ("input", None),
        ("model", "x"),
        ("primary", 3),
        ("preprocessing", {"mean": [0, 0], "std": [1, 1, 1]}),
    ],
)
def test_manifest_fields_of_the_wrong_type_are_refused(artifact, tmp_path, field, value):
    art = copy_artifact(artifact, tmp_path / "art")
    edit_manifest(art, **{field: value})
    with pytest.raises(ManifestError):
        runtime.load(art)
