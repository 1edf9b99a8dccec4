"""Measuring an exported model: accuracy on a labelled dataset (:mod:`.evaluate`), under the test
protocol its manifest records (:mod:`danet_deploy.eval_protocol`)."""
