#!/usr/bin/env bash
# The robot's install, checked: build the wheel, install it with the runtime extra only
# (danet-deploy[onnxruntime]: numpy, Pillow, ONNX Runtime; no torch) into a fresh venv, and run an
# ONNX artifact that the full venv exported. The mask must equal the full venv's, and torch (and
# danet_deploy.model) must be absent there. Prints the wheel build time, the install time and size.
#
# The console scripts are checked there too: danet-run runs the artifact, danet-export (which needs
# torch) exits 2 naming the extra to install.
#
# usage: scripts/check_runtime_wheel.sh [PYTHON]   (PYTHON: the full venv's interpreter, default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${1:-.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/danet-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t=$(now)
"$PY" -m build --wheel --outdir "$WORK/dist" . > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
WHEEL=$(ls "$WORK"/dist/danet_deploy-*.whl)
echo "wheel: $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB) built in $(since "$t") s"

# the artifact and its mask, from the full venv (the one that has torch and the exporters)
"$PY" -m danet_deploy.cli.export --model danet_demo --target onnx --input-size 128x128 \
  --output "$WORK/artifact" > "$WORK/export.log" 2>&1 || { cat "$WORK/export.log"; exit 1; }
"$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path

import numpy as np

from danet_deploy import runtime

work = Path(sys.argv[1])
image = np.random.default_rng(7).integers(0, 256, (128, 160, 3), dtype=np.uint8)  # resized to 128x128 by the session
np.save(work / "image.npy", image)
from PIL import Image

Image.fromarray(image).save(work / "image.png")
with runtime.load(work / "artifact") as session:
    np.save(work / "expected.npy", session.run(image))
EOF

# a fresh venv with the runtime extra only (base interpreter of the full venv; packages from the registry)
t=$(now)
BASE=$("$PY" -c 'import sys; print(sys._base_executable)')
"$BASE" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL[onnxruntime]" > "$WORK/pip.log" 2>&1 \
  || { cat "$WORK/pip.log"; exit 1; }
echo "runtime venv: installed $(basename "$WHEEL")[onnxruntime] in $(since "$t") s," \
  "$(du -sm "$WORK/venv" | cut -f1) MiB on disk:" \
  "$("$WORK/venv/bin/python" -m pip list --format freeze --disable-pip-version-check 2>/dev/null | grep -v '^pip=' | tr '\n' ' ')"
"$WORK/venv/bin/python" -m pip check --disable-pip-version-check

# run it there, from outside the repository so only the installed wheel is importable
(cd "$WORK" && "$WORK/venv/bin/python" - "$WORK" "$ROOT" <<'EOF'
import importlib.util
import sys
from pathlib import Path

import numpy as np

import danet_deploy
from danet_deploy import runtime

work, root = Path(sys.argv[1]), Path(sys.argv[2])
where = Path(danet_deploy.__file__).resolve()
assert not where.is_relative_to(root), f"danet_deploy came from the repository ({where}), not the wheel"
assert importlib.util.find_spec("torch") is None, "torch is installed in the runtime-only venv"
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("import torch worked in the runtime-only venv")
with runtime.load(work / "artifact") as session:
    mask = session.run(np.load(work / "image.npy"))
expected = np.load(work / "expected.npy")
assert mask.shape == expected.shape and np.array_equal(mask, expected), \
    f"the wheel's mask differs from the full venv's in {int((mask != expected).sum())} pixels"
loaded = sorted(m for m in sys.modules if m.startswith(("danet_deploy.model", "danet_deploy.export", "torch")))
assert not loaded, f"the runtime imported {loaded}"
print(f"runtime venv: {where.parent} ran the ONNX artifact: mask {mask.shape} equals the full venv's; "
      "no torch, no danet_deploy.model")
EOF
)

# the console scripts of the wheel: one that needs only the runtime runs, one that needs torch says which extra
"$WORK/venv/bin/danet-run" --model "$WORK/artifact" --output "$WORK/masks" "$WORK/image.png" > "$WORK/run.log" 2>&1 \
  || { cat "$WORK/run.log"; exit 1; }
test -f "$WORK/masks/image_mask.png" || { echo "danet-run wrote no mask"; cat "$WORK/run.log"; exit 1; }
rc=0; "$WORK/venv/bin/danet-export" --model danet_demo --target onnx --output "$WORK/export-here" 2> "$WORK/export.err" || rc=$?
if [ "$rc" != 2 ] || ! grep -q "danet-deploy\[export\]" "$WORK/export.err" || grep -q Traceback "$WORK/export.err"; then
  echo "danet-export without torch: expected exit 2 naming danet-deploy[export], got $rc:"; cat "$WORK/export.err"; exit 1
fi
echo "runtime venv: danet-run wrote a mask; danet-export says: $(head -c 200 "$WORK/export.err")"
