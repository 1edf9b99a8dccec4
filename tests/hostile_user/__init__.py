"""Tests of a hostile-but-realistic user (a package, so its conftest does not shadow tests/conftest.py)."""
