"""``danet-export --target triton --from ARTIFACT --output REPO``: a Triton model repository for an artifact.

Options come as ``--option KEY=VALUE`` (the fields of :class:`~danet_deploy.serve.TritonOptions`,
e.g. ``instances=2``, ``max_batch_size=4``, ``threads=4``, ``streams=2``, ``ort_tensorrt=true``),
plus ``force=true`` to replace an existing model folder in the repository.
"""

from __future__ import annotations

from ..errors import ConfigError
from .common import EXIT_OK, print_json


def export_triton(artifact: str | None, output: str | None, options: dict[str, str], as_json: bool = False) -> int:
    from ..serve.repository import TritonOptions, write_triton_repository

    if not artifact or not output:
        raise ConfigError("--target triton writes a model repository for an existing artifact: pass --from ARTIFACT_DIR "
                          "and --output REPO_DIR")
    options = dict(options)
    force = options.pop("force", "false").strip().lower() in ("1", "true", "yes", "on")
    result = write_triton_repository(artifact, output, TritonOptions.from_strings(options), force=force)
    if as_json:
        print_json(result.to_dict())
    else:
        print(f"{result.model_dir}  platform={result.platform} version={result.version_dir.name}")
        for note in result.notes:
            print(f"note: {note}")
        if result.pending:
            print(f"pending: {result.pending}")
    return EXIT_OK
