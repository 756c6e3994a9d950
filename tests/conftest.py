"""Shared fixtures: settings for tests, and an isolated topic prefix per test."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic prefix, so tests on one broker never share a topic."""
    return f"t{uuid.uuid4().hex[:10]}."
