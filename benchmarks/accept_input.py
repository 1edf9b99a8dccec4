"""Host time per frame that ``--accept rgb8`` saves: the camera's uint8 image into the graph.

    PYTHONPATH=. python benchmarks/accept_input.py [--sizes 512x512,1024x2048] [--rounds 30]
        [--engine-sizes 512x512] [--model danet_demo] [--threads 2] [--out benchmarks/results/accept_input]

For each size, in one process and interleaved round by round (so machine load hits every variant
alike), all on the same uint8 RGB frame:

* ``host float``: what ``Session.run`` does on the host for a default artifact before the engine:
  ``Session.prepare`` = uint8 HWC -> normalised float32 NCHW (``(x/255 - mean)/std`` by lookup table);
* ``host accept``: the same for an ``--accept rgb8`` artifact: ``Session.prepare`` = the uint8 NHWC
  batch as it is (one copy into a contiguous batch);
* ``in-graph prefix``: what the engine then does instead: the ``--accept`` wrapper alone (Cast,
  Div, Sub, Div, Transpose) as its own graph in ONNX Runtime and in OpenVINO (an upper bound:
  inside the real model OpenVINO fuses it into the first convolution);
* bytes that cross to the engine per frame (float32 vs uint8: what a GPU copy or a Triton request
  carries).

``--engine-sizes``: also ``Session.run`` end to end on a static ONNX Runtime artifact of
``--model``, float vs ``--accept rgb8``, interleaved (the net effect on the whole call; noisy on a
loaded machine, since the engine dominates).

Writes ``OUT.json``, ``OUT.md`` and ``OUT.png`` (bars: host ms per frame, with a legend) with the CPU
model and flags and the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent


def _size(text: str) -> tuple[int, int]:
    from danet_deploy.cli.common import parse_size

    return parse_size(text)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def prefix_runners(size: tuple[int, int], preprocessing: dict, threads: int) -> dict:
    """The --accept wrapper alone, as ONNX Runtime and OpenVINO run it: uint8 NHWC -> float32 NCHW."""
    import onnx
    import onnxruntime as ort
    import openvino as ov
    from onnx import TensorProto, helper

    from danet_deploy.export.accept import wrap_onnx, wrap_openvino

    h, w = size
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "prefix",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, h, w])],
    )
    model = wrap_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "rgb8", preprocessing)
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    param = ov.opset13.parameter([1, 3, h, w], ov.Type.f32, name="input")
    ov_model = wrap_openvino(ov.Model([ov.opset13.result(param)], [param], "prefix"), "rgb8", preprocessing)
    compiled = ov.Core().compile_model(
        ov_model,
        "CPU",
        {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"},
    )
    request = compiled.create_infer_request()
    return {"onnxruntime": lambda x: session.run(None, {"image": x}), "openvino": lambda x: request.infer({0: x})}


def measure_host(size: tuple[int, int], rounds: int, threads: int) -> dict:
    from danet_deploy.inputs import image_batch
    from danet_deploy.model import get_config
    from danet_deploy.runtime.preprocess import preprocess

    pre = get_config("danet_demo").preprocessing.to_dict()
    frame = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    batch = image_batch([frame])
    variants = {"host float": lambda: preprocess([frame], pre, size), "host accept": lambda: image_batch([frame], size)}
    for count in sorted({threads, 1}, reverse=True):  # the engine's threads, and one (less sync under load)
        runners = prefix_runners(size, pre, count)
        np.testing.assert_array_equal(runners["onnxruntime"](batch)[0], preprocess([frame], pre))  # the same tensor
        suffix = "" if count == threads else f", {count} thread"
        variants.update(
            {f"in-graph prefix ({name}{suffix})": (lambda run=run: run(batch)) for name, run in runners.items()}
        )
    for fn in variants.values():  # warm-up (first OpenVINO/ORT call allocates)
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(_timed(fn))
    med = {name: statistics.median(v) for name, v in times.items()}
    saved = med["host float"] - med["host accept"]
    return {
        "size": list(size),
        "rounds": rounds,
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "min_ms": {k: round(min(v), 3) for k, v in times.items()},
        "iqr_ms": {
            k: [round(float(np.percentile(v, 25)), 3), round(float(np.percentile(v, 75)), 3)] for k, v in times.items()
        },
        "host_saved_ms": round(saved, 3),
        "host_ratio_float_over_accept": round(med["host float"] / med["host accept"], 2),
        "net_saved_ms_onnxruntime": round(saved - med["in-graph prefix (onnxruntime)"], 3),
        "net_saved_ms_openvino_upper_bound": round(saved - med["in-graph prefix (openvino)"], 3),
        "bytes_to_engine": {"float32 NCHW": int(np.prod(size)) * 3 * 4, "uint8 NHWC": int(np.prod(size)) * 3},
    }


def measure_engine(model: str, size: tuple[int, int], rounds: int, threads: int) -> dict:
    """``Session.run`` end to end, float artifact vs --accept rgb8, interleaved (ONNX Runtime, static)."""
    from danet_deploy import runtime
    from danet_deploy.data.scenes import SceneDataset
    from danet_deploy.export import ExportRequest, export

    frame = SceneDataset("val", size=size, count=1)[0][0]
    with tempfile.TemporaryDirectory(prefix="danet-accept-bench-") as tmp:
        folders = {
            accept: export(
                ExportRequest(model, input_size=size, accept=accept, output=Path(tmp) / accept), log=lambda _: None
            )[0]
            for accept in ("float", "rgb8")
        }
        sessions = {accept: runtime.load(folder, threads=threads) for accept, folder in folders.items()}
        try:
            masks = {accept: s.run(frame) for accept, s in sessions.items()}  # warm-up, and the same answer
            agreement = float((masks["float"] == masks["rgb8"]).mean())
            times: dict[str, list[float]] = {accept: [] for accept in sessions}
            for _ in range(rounds):
                for accept, session in sessions.items():
                    times[accept].append(_timed(lambda session=session: session.run(frame)))
        finally:
            for session in sessions.values():
                session.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": model,
        "size": list(size),
        "rounds": rounds,
        "mask_agreement": agreement,
        "run_ms": {k: round(v, 2) for k, v in med.items()},
        "run_saved_ms": round(med["float"] - med["rgb8"], 2),
        "run_ratio_float_over_accept": round(med["float"] / med["rgb8"], 3),
    }


def machine() -> dict:
    from danet_deploy.bench.machine import FEATURE_FLAGS
    from danet_deploy.util.cpu import read_cpuinfo

    name, flags = read_cpuinfo()
    return {
        "cpu": name,
        "logical_cores": os.cpu_count(),
        "flags": sorted(f for f in FEATURE_FLAGS if f in flags),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def write_markdown(result: dict, path: Path) -> None:
    m = result["machine"]
    lines = [
        "# Host time per frame saved by --accept rgb8 (raw uint8 image into the graph)",
        "",
        f"- machine: {m['cpu']}, {m['logical_cores']} logical cores; flags: {' '.join(m['flags'])}",
        f"- load average before / after: {m['load_average']} / {result['load_average_after']}"
        + (" (a shared machine, loaded by other jobs: re-run quiet for absolute numbers)" if result["loaded"] else ""),
        f"- command: `{result['command']}`; {result['threads']} threads; medians of interleaved rounds",
        "",
        (
            "| size | host float ms (normalise to NCHW) | host accept ms (uint8 batch) | host saved ms | ratio | "
            "in-graph prefix ORT ms | in-graph prefix OpenVINO ms | net saved ORT ms | bytes to engine float -> uint8 |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    best = [
        "",
        "Fastest round of each (what the work costs when the machine lets it run; medians above carry the load):",
        "",
        "| size | variant | median ms | min ms |",
        "|---|---|---|---|",
    ]
    for r in result["host"]:
        best += [
            f"| {r['size'][0]}x{r['size'][1]} | {k} | {v:.3f} | {r['min_ms'][k]:.3f} |"
            for k, v in r["median_ms"].items()
        ]
        med, b = r["median_ms"], r["bytes_to_engine"]
        lines.append(
            f"| {r['size'][0]}x{r['size'][1]} | {med['host float']:.2f} | {med['host accept']:.3f} | "
            f"{r['host_saved_ms']:.2f} | {r['host_ratio_float_over_accept']:.1f}x | "
            f"{med['in-graph prefix (onnxruntime)']:.2f} | {med['in-graph prefix (openvino)']:.2f} | "
            f"{r['net_saved_ms_onnxruntime']:.2f} | {b['float32 NCHW'] / 2**20:.1f} MiB -> "
            f"{b['uint8 NHWC'] / 2**20:.1f} MiB |"
        )
    lines += best
    if result["engine"]:
        lines += [
            "",
            "Session.run end to end (ONNX Runtime, static artifact, float vs --accept rgb8):",
            "",
            "| model | size | run float ms | run accept ms | saved ms | ratio | masks equal |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in result["engine"]:
            lines.append(
                f"| {r['model']} | {r['size'][0]}x{r['size'][1]} | {r['run_ms']['float']:.1f} | "
                f"{r['run_ms']['rgb8']:.1f} | {r['run_saved_ms']:.1f} | {r['run_ratio_float_over_accept']:.3f} | "
                f"{r['mask_agreement']:.4f} |"
            )
    lines += [
        "",
        (
            "The in-graph prefix is timed as a graph of its own (an upper bound: inside the model OpenVINO "
            "fuses the normalisation into the first convolution, and ONNX Runtime runs it on the engine's threads)."
        ),
    ]
    path.write_text("\n".join(lines) + "\n")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["host float", "host accept", "in-graph prefix (onnxruntime)", "in-graph prefix (openvino)"]
    labels = [
        "host: normalise to float32 NCHW (default)",
        "host: uint8 batch as it is (--accept rgb8)",
        "engine: --accept prefix, ONNX Runtime",
        "engine: --accept prefix, OpenVINO",
    ]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.2
    for i, (name, label) in enumerate(zip(names, labels)):
        ax.bar(
            [k + i * width for k in range(len(result["host"]))],
            [r["median_ms"][name] for r in result["host"]],
            width,
            label=label,
        )
    ax.set_xticks([k + 1.5 * width for k in range(len(result["host"]))])
    ax.set_xticklabels([f"{r['size'][0]}x{r['size'][1]}" for r in result["host"]])
    ax.set_ylabel("ms per frame (median)")
    ax.set_title(
        f"--accept rgb8: preprocessing per frame ({result['machine']['cpu'][:40]}, loaded)"
        if result["loaded"]
        else "--accept rgb8: preprocessing per frame"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="512x512,1024x2048")
    parser.add_argument("--engine-sizes", default="512x512", help="Session.run end to end at these sizes ('' skips)")
    parser.add_argument("--model", default="danet_demo")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--engine-rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results" / "accept_input"), help="output stem (.json/.md/.png)")
    args = parser.parse_args(argv)
    try:
        sizes = [_size(s) for s in args.sizes.split(",") if s]
        engine_sizes = [_size(s) for s in args.engine_sizes.split(",") if s]
    except Exception as exc:
        parser.error(str(exc))
    info = machine()
    result = {
        "machine": info,
        "threads": args.threads,
        "command": "PYTHONPATH=. python benchmarks/accept_input.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": [],
        "engine": [],
    }
    for size in sizes:
        print(f"host and prefix at {size[0]}x{size[1]} ...", file=sys.stderr, flush=True)
        result["host"].append(measure_host(size, args.rounds, args.threads))
    for size in engine_sizes:
        print(f"Session.run of {args.model} at {size[0]}x{size[1]} ...", file=sys.stderr, flush=True)
        result["engine"].append(measure_engine(args.model, size, args.engine_rounds, args.threads))
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    result["loaded"] = max(info["load_average"][0], result["load_average_after"][0]) > 0.5 * (
        info["logical_cores"] or 1
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, out.with_suffix(".md"))
    plot(result, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
