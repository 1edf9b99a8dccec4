"""What a weights-only checkpoint load may rebuild besides tensors: plain data, never code.

``torch.load(weights_only=True)`` refuses every global it does not know. Training checkpoints
name a few that hold only data:

* numpy scalars (the official DANet ``best_pred``; mmengine's metrics in ``message_hub``) and
  numeric numpy arrays (the histories inside mmengine's ``HistoryBuffer``): rebuilt from a dtype
  and raw bytes by numpy itself, which runs no code from the file;
* ``mmengine.logging.history_buffer.HistoryBuffer`` (every mmengine training checkpoint's
  ``message_hub``): mmengine need not be installed, and is never imported; an inert stand-in
  registered under that qualified name receives the pickled state as data.

Everything else stays refused: a ``__reduce__`` naming ``os.system`` or any other callable, numpy
arrays of Python objects or strings, other classes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

#: Qualified names of training-state classes whose pickled state is read as inert data.
TRAINING_STATE_CLASSES = ("mmengine.logging.history_buffer.HistoryBuffer",)

# numeric dtypes whose instances may be rebuilt (numpy applies a dtype's state to an instance of its class)
_NUMERIC_DTYPES = (
    "Bool",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "Float16",
    "Float32",
    "Float64",
)


class TrainingState:
    """A stand-in for a training-state object (e.g. mmengine's ``HistoryBuffer``) named in a checkpoint.

    Why a stand-in: the checkpoint's weights are wanted, not its training bookkeeping, and the
    real class would have to be importable (and trusted) to unpickle it. This one has no
    behaviour: constructor arguments and the pickled state are kept as data, never interpreted.
    """

    qualified_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> TrainingState:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualified_name} (not loaded: training state)>"


def _stand_in(qualified_name: str) -> type[TrainingState]:
    name = qualified_name.rsplit(".", 1)[-1]
    return type(name, (TrainingState,), {"qualified_name": qualified_name, "__module__": __name__})


_STAND_INS = {name: _stand_in(name) for name in TRAINING_STATE_CLASSES}


def _numpy_globals() -> list[Any]:
    """numpy's scalar/array reconstructors under the names numpy 1.x and 2.x pickle them with, plus
    ``ndarray``, ``dtype`` and the numeric dtype classes (object and string dtypes stay refused)."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: list[Any] = [np.ndarray, np.dtype]
    for function in (getattr(multiarray, "scalar"), getattr(multiarray, "_reconstruct")):  # noqa: B009 - no stubs
        allowed += [
            function,
            *(
                (function, f"{prefix}.{function.__name__}")
                for prefix in ("numpy.core.multiarray", "numpy._core.multiarray")
            ),
        ]
    module = getattr(np, "dtypes", None)
    allowed += [getattr(module, f"{n}DType") for n in _NUMERIC_DTYPES if hasattr(module, f"{n}DType")]
    return allowed


def weights_only_globals() -> contextlib.AbstractContextManager:
    """A context in which ``torch.load(weights_only=True)`` also rebuilds the data-only globals above."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:  # pragma: no cover - torch < 2.5: such files stay refused
        return contextlib.nullcontext()
    return safe_globals([*_numpy_globals(), *((cls, name) for name, cls in _STAND_INS.items())])
