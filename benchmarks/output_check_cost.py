"""Cost of the runtime's NaN/Inf check of engine outputs (``Session.check_outputs``, on by default).

    PYTHONPATH=. .venv/bin/python benchmarks/output_check_cost.py            # ~1 min on 2 cores

Exports danet_demo at 512x512 (static FP32 ONNX), then times ``Session.infer`` with the check on
and off, interleaved (so machine load hits both alike), and the check alone
(``np.isfinite(logits).all()`` on the 1x8x512x512 logits). Prints medians and the ratio and
writes them to benchmarks/results/output_check_cost.json. The on/off difference of whole calls is
within run-to-run noise on a shared machine; the check alone is the cost.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(rounds: int = 20) -> int:
    from danet_deploy import runtime
    from danet_deploy.export import ExportRequest, export
    from danet_deploy.util.cpu import read_cpuinfo

    with tempfile.TemporaryDirectory(prefix="danet-check-") as tmp:
        artifact, _ = export(
            ExportRequest("danet_demo", input_size=(512, 512), output=Path(tmp) / "art"), log=lambda _: None
        )
        x = np.random.default_rng(0).standard_normal((1, 3, 512, 512)).astype(np.float32)
        times: dict[str, list[float]] = {"on": [], "off": []}
        with runtime.load(artifact, threads=2) as session:
            for _ in range(3):
                session.infer(x)
            for _ in range(rounds):
                for mode in ("on", "off"):
                    session.check_outputs = mode == "on"
                    start = time.perf_counter()
                    logits = session.infer(x)
                    times[mode].append(time.perf_counter() - start)
        alone = []
        for _ in range(200):
            start = time.perf_counter()
            np.isfinite(logits).all()
            alone.append(time.perf_counter() - start)
    on, off, check = (statistics.median(v) * 1e3 for v in (times["on"], times["off"], alone))
    result = {
        "machine": read_cpuinfo()[0],
        "input": "1x3x512x512",
        "logits": list(logits.shape),
        "infer_ms_check_on": round(on, 2),
        "infer_ms_check_off": round(off, 2),
        "check_alone_ms": round(check, 3),
        "check_share_of_infer_pct": round(100 * check / off, 2),
        "rounds": rounds,
        "threads": 2,
    }
    result["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    result["command"] = "PYTHONPATH=. python benchmarks/output_check_cost.py"
    out = Path(__file__).resolve().parent / "results" / "output_check_cost.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
