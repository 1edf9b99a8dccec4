"""Measuring an exported model: accuracy on a labelled dataset (:mod:`.evaluate`) and its test protocol."""
