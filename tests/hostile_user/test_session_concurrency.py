"""One Session called from many threads: each call gets its own result (equal to the
single-threaded one) on every backend, the TensorRT backend gives each concurrent call its own
execution context, and a closed Session refuses calls with a typed error."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hostile_user.hostile_support import MODEL, in_threads

pytest.importorskip("onnxruntime")

from danet_deploy import runtime
from danet_deploy.errors import ConfigError, SessionClosedError

#: a valid preprocessing section (a Manifest checks its sections when it is built)
PREPROCESSING = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "torch"])
def test_eight_threads_on_one_session_get_their_own_results(dynamic_artifact, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    if backend == "torch":
        pytest.importorskip("torch")
    session = (
        runtime.load(dynamic_artifact, backend=backend, threads=1)
        if backend != "torch"
        else runtime.load(MODEL, threads=1)
    )
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 3, 64, 64)).astype(np.float32) for _ in range(8)]
    expected = [session.infer(x) for x in inputs]
    assert not np.allclose(expected[0], expected[1])  # distinct inputs give distinguishable logits
    results: dict[tuple[int, int], np.ndarray] = {}

    def work(i: int) -> None:
        for j in range(5):
            results[i, j] = session.infer(inputs[i])

    errors = in_threads(work)
    session.close()
    assert not errors and len(results) == 40
    for (i, _), logits in results.items():
        np.testing.assert_allclose(logits, expected[i], rtol=1e-5, atol=1e-5)


def _fake_tensorrt_backend(monkeypatch, tmp_path, context_factory, **options):
    """A TensorRTBackend over cuda-python and TensorRT stand-ins (tests/fake_cuda.py): no GPU here."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/
    from fake_cuda import FakeCudart, install_fake_cuda_python, install_fake_tensorrt

    from danet_deploy.manifest import Manifest
    from danet_deploy.tensorrt import logger

    fake = FakeCudart()
    install_fake_tensorrt(monkeypatch, lambda: context_factory(fake))
    install_fake_cuda_python(monkeypatch, fake)
    logger._reset_for_tests()
    from danet_deploy.runtime.backends.tensorrt import TensorRTBackend

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    facts = {"stage": "engine", "version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}
    manifest = Manifest(
        target="tensorrt",
        backend="tensorrt",
        precision="fp16",
        primary="model.engine",
        model={"name": "fake"},
        preprocessing=PREPROCESSING,
        input={"name": "input", "shape": [1, 3, 4, 6]},
        output={"name": "logits", "shape": [1, 2, 4, 6]},
        extra={"tensorrt": facts},
    )

    def make(**more):
        return TensorRTBackend(engine, manifest, **{**options, **more})

    return make(), fake, make


@pytest.mark.parametrize("contexts", [1, 3])
def test_tensorrt_backend_gives_each_concurrent_call_its_own_context(monkeypatch, tmp_path, contexts):
    """TensorRT through cuda-python and TensorRT stand-ins (no GPU here): 8 threads with distinct
    inputs on one backend get their own results; at most ``contexts`` execution contexts exist,
    each serving one call at a time, and with several they run side by side."""
    from fake_cuda import FakeContext

    created, lock = [], threading.Lock()
    busy, peak = set(), [0]

    class SlowContext(FakeContext):
        def execute_async_v3(self, stream: int) -> bool:
            with lock:
                assert self not in busy, "two calls on one execution context"
                busy.add(self)
                peak[0] = max(peak[0], len(busy))
            time.sleep(0.003)
            try:
                return super().execute_async_v3(stream)
            finally:
                with lock:
                    busy.discard(self)

    def new_context(fake):
        created.append(SlowContext(fake))
        return created[-1]

    backend, fake, make = _fake_tensorrt_backend(monkeypatch, tmp_path, new_context, contexts=contexts)
    assert backend.parallel_requests() == contexts and backend.describe()["contexts"] == contexts
    results = {}

    def work(i: int) -> None:
        x = np.full((1, 3, 4, 6), float(i), np.float32)
        results[i] = [backend.infer(x + k) for k in range(10)]

    errors = in_threads(work, timeout_s=60)
    assert not errors and len(results) == 8
    for i, outs in results.items():
        for k, out in enumerate(outs):
            np.testing.assert_allclose(out[:, 0], np.full((1, 4, 6), 3.0 * (i + k)))
            np.testing.assert_allclose(out[:, 1], np.full((1, 4, 6), -3.0 * (i + k)))
    assert len(created) == contexts and peak[0] == contexts  # the pool grew to its limit, and no further
    backend.close()
    assert fake.memory == {}  # every lane's buffers freed
    with pytest.raises(ConfigError, match="contexts must be a positive integer"):
        make(contexts=0)


def test_closing_a_tensorrt_session_lets_the_running_call_finish_and_refuses_the_rest(monkeypatch, tmp_path):
    """close() while one call runs on the only context and another waits for it: the running call
    returns its result, the waiting one and every later one get SessionClosedError, nothing hangs."""
    from fake_cuda import FakeContext

    started, release = threading.Event(), threading.Event()

    class HeldContext(FakeContext):
        def execute_async_v3(self, stream: int) -> bool:
            if not started.is_set():
                started.set()
                release.wait(30)
            return super().execute_async_v3(stream)

    backend, fake, _ = _fake_tensorrt_backend(monkeypatch, tmp_path, HeldContext)
    x = np.ones((1, 3, 4, 6), np.float32)
    outcome: dict[str, object] = {}

    def call(name):
        try:
            outcome[name] = backend.infer(x)
        except BaseException as exc:
            outcome[name] = exc

    first = threading.Thread(target=call, args=("running",))
    first.start()
    assert started.wait(10)
    waiting = threading.Thread(target=call, args=("waiting",))
    waiting.start()
    time.sleep(0.05)
    closer = threading.Thread(target=backend.close)
    closer.start()
    time.sleep(0.05)
    release.set()
    for t in (first, waiting, closer):
        t.join(10)
        assert not t.is_alive(), "a thread hung on the closing session"
    np.testing.assert_allclose(outcome["running"][:, 0], np.full((1, 4, 6), 3.0))
    assert isinstance(outcome["waiting"], SessionClosedError)
    with pytest.raises(SessionClosedError):
        backend.infer(x)
    assert fake.memory == {}


def test_a_closed_session_refuses_calls_and_closes_twice(artifact):
    session = runtime.load(artifact)
    session.close()
    session.close()  # harmless
    with pytest.raises(SessionClosedError):
        session.run(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(SessionClosedError):
        session.infer(np.zeros((1, 3, 64, 64), np.float32))
