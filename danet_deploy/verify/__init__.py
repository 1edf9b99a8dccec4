"""Checking an exported model against what it was exported from, and against the truth.

:mod:`.parity` compares an artifact with the reference model on the same inputs (``danet-parity``;
:mod:`.parity_check` is its request); :mod:`.perlayer` finds the layer where an FP16/INT8 graph loses
precision and :mod:`.perlayer_run` runs it on an artifact (``danet-parity --per-layer``);
:mod:`.evaluate` scores accuracy on a labelled dataset (``danet-eval``), under the test protocol its
manifest records (:mod:`danet_deploy.eval_protocol`)."""
