"""Every test here runs on each store backend (ids sqlite, postgresql): see env_store in
tests/conftest.py."""

from __future__ import annotations

import pytest

from tests.conftest import EnvStore


@pytest.fixture(autouse=True)
def store_backend(env_store: EnvStore) -> EnvStore:
    return env_store
