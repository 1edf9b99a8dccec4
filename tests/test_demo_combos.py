"""danet-demo's export step with a reference-engine combo: that engine runs the preset itself, so
there is no export target and nothing must be exported for it (never ``ensure_artifact(None)``)."""

from __future__ import annotations

import pytest

from danet_deploy import demo
from danet_deploy.bench import runner
from danet_deploy.data import scenes
from danet_deploy.targets import reference_engine


class _StopAfterExport(Exception):
    pass


def test_reference_combo_is_skipped_not_exported(tmp_path, monkeypatch):
    calls: list[tuple] = []
    logged: list[str] = []
    monkeypatch.setattr(runner, "ensure_artifact", lambda *args: calls.append(args))

    def stop(*args, **kwargs):
        raise _StopAfterExport

    monkeypatch.setattr(scenes, "SceneDataset", stop)  # step 2 starts: the export step is over
    name = reference_engine().name
    request = demo.DemoRequest(combos=f"{name}:fp32", output=str(tmp_path / "demo"), input_size=(64, 64))
    with pytest.raises(_StopAfterExport):
        demo.run_demo(request, log=logged.append)
    assert calls == []
    assert any(f"skipping {name}/fp32" in line for line in logged), logged
