"""Shared set-up for the classifier's tests."""

from __future__ import annotations

import pytest

from routing.classify import warm


@pytest.fixture(scope="session", autouse=True)
def _warm_classifier() -> None:
    """Compile the detector table and pay every view's first-use costs once, as the server and ``sovereign classify``
    do before their first input: a test that happens to run first would otherwise spend its 250 ms deadline on it
    (on a loaded machine it did, and failed closed as TOP SECRET)."""
    warm()
