"""Session fixtures for the real files the tests use (fetched once, cached: see assets.py)."""

from pathlib import Path

import pytest

import assets


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return assets.smollm2_path()


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    return assets.gemma3_path()


@pytest.fixture(scope="session")
def qwen25_coder_path() -> Path:
    return assets.qwen25_coder_path()


@pytest.fixture(scope="session")
def llama_vocab_dir() -> Path:
    return assets.llama_vocab_dir()
