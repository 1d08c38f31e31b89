"""Conversion, LoRA conversion and `serve-models --export-static` leave no half-written output: on a
full disk (ENOSPC raised halfway through a write, and a real size limit that makes the OS refuse
the writes: RLIMIT_FSIZE, which needs no privileges) and when the process is killed (SIGKILL) in the
middle of writing. The killed runs are paused mid-write by a driver script of this file, not by
any hook in wgllm, so the kill lands at a known point.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from gguf import GGUFWriter
from test_lora import make_adapter, unload
from test_server import write_model, write_web
from tiny_models import tiny_model

from wgllm.convert import ConversionConfig, convert_checkpoint
from wgllm.errors import ModelFormatError
from wgllm.gguf_io import GGUFFile
from wgllm.server import Catalog, is_listable, read_model_info

ROOT = Path(__file__).resolve().parents[2]


def convert(folder: Path, out: Path, **kw) -> Path:
    return convert_checkpoint(ConversionConfig(str(folder), "safetensors", output_file=str(out), **kw))


def half_then_enospc(real, calls: list, at: int):
    """A GGUFWriter write method that, on call number `at`, writes half its bytes and then fails
    as a full disk does."""

    def write(self, *args, **kw):
        calls.append(self.path)
        if len(calls) < at:
            return real(self, *args, **kw)
        self.fout[0].write(b"\x55" * 1000)
        self.fout[0].flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def size_limited(limit: int):
    """preexec_fn: files of the child may not grow past `limit` bytes (writes fail with EFBIG)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal kills the child at the limit
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- full disk -----------------------------------------------------------------------------------
def test_full_disk_mid_conversion_keeps_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "m.gguf"
    write_model(out, name="previous")
    before = out.read_bytes()
    calls: list = []
    monkeypatch.setattr(GGUFWriter, "write_tensor_data", half_then_enospc(GGUFWriter.write_tensor_data, calls, at=3))
    with pytest.raises(OSError) as e:
        convert(tiny_model("llama").folder, out)
    assert e.value.errno == errno.ENOSPC and f"{out} was not written: No space left on device" in str(e.value), e.value
    assert len(calls) == 3 and Path(calls[0]).name.startswith(".m.gguf.")  # it was writing a temporary file beside out
    assert out.read_bytes() == before and listing(tmp_path) == ["m.gguf"]


def test_full_disk_mid_lora_conversion_leaves_nothing(tmp_path, monkeypatch):
    peft_model, adapter = make_adapter("llama", tmp_path / "peft", r=2)
    unload(peft_model)
    out_dir = tmp_path / "out"
    calls: list = []
    monkeypatch.setattr(GGUFWriter, "write_tensors_to_file", half_then_enospc(GGUFWriter.write_tensors_to_file, calls, at=1))
    config = ConversionConfig(str(tiny_model("llama").folder), "safetensors", lora_ckpt=str(adapter), lora_output_file=str(out_dir / "lora.gguf"))
    with pytest.raises(OSError, match=r"lora\.gguf was not written: No space left on device"):
        convert_checkpoint(config)
    assert len(calls) == 1 and listing(out_dir) == []
    monkeypatch.undo()
    assert convert_checkpoint(config) == out_dir / "lora.gguf" and GGUFFile(out_dir / "lora.gguf").get("adapter.type") == "lora"


def test_conversion_refused_by_the_os_leaves_the_old_file(tmp_path):
    """The OS itself refuses the writes past a size limit, as it would on a full disk."""
    folder = tiny_model("gpt2").folder
    full = convert(folder, tmp_path / "full.gguf")
    out = tmp_path / "out" / "m.gguf"
    out.parent.mkdir()
    write_model(out, name="previous")
    before = out.read_bytes()
    limit = full.stat().st_size // 2
    assert len(before) < limit
    r = subprocess.run([sys.executable, "-m", "wgllm.cli", "convert", "--input-ckpt", str(folder), "--output", str(out)],
                       capture_output=True, text=True, preexec_fn=size_limited(limit), timeout=300)
    assert r.returncode != 0 and f"wgllm: error: {out} was not written" in r.stderr, r.stderr
    assert out.read_bytes() == before and listing(out.parent) == ["m.gguf"]


def test_export_refused_by_the_os_leaves_nothing(tmp_path):
    web, models = write_web(tmp_path / "web"), tmp_path / "models"
    models.mkdir()
    write_model(models / "big.gguf", rows=2048)  # 512 KiB of tensor data
    site = tmp_path / "site"
    site.mkdir()  # an empty OUT_DIR is accepted, and must stay as it was
    argv = [sys.executable, "-m", "wgllm.server", "--export-static", str(site), "--models-dir", str(models), "--web-dir", str(web)]
    r = subprocess.run(argv, capture_output=True, text=True, preexec_fn=size_limited(100_000), timeout=120)
    assert r.returncode == 2 and f"serve-models: error: [Errno {errno.EFBIG}] {site} was not written: File too large" in r.stderr, r.stderr
    assert listing(tmp_path) == ["models", "site", "web"] and listing(site) == []
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)  # with room: the empty folder becomes the site
    assert r.returncode == 0, r.stderr
    assert (site / "models" / "big.gguf").read_bytes() == (models / "big.gguf").read_bytes() and listing(tmp_path) == ["models", "site", "web"]


# -- killed mid-write ----------------------------------------------------------------------------
def run_until_paused(script: str, log: Path) -> tuple[subprocess.Popen, Path]:
    """Start `script` (which prints PAUSED <temp path> mid-write, then sleeps); return it and the path."""
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, stderr=out, text=True,
                            cwd=ROOT / "tests" / "py")
    line = proc.stdout.readline()
    if not line.startswith("PAUSED "):
        proc.kill()
        proc.wait()
        raise AssertionError(f"the driver did not pause ({line!r}):\n{log.read_text()}")
    return proc, Path(line.split(" ", 1)[1].strip())


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def test_killed_conversion_leaves_the_old_file_and_a_hidden_partial(tmp_path):
    folder = tiny_model("llama").folder
    out = tmp_path / "m.gguf"
    write_model(out, name="previous")
    before = out.read_bytes()
    proc, partial = run_until_paused(f"""
        import sys, time
        from gguf import GGUFWriter
        from wgllm.convert import ConversionConfig, convert_checkpoint
        real, n = GGUFWriter.write_tensor_data, []
        def write(self, *args, **kw):
            real(self, *args, **kw)
            n.append(1)
            if len(n) == 3:  # three tensors written: stop here until killed
                self.fout[0].flush()
                print("PAUSED", self.path, flush=True)
                time.sleep(600)
        GGUFWriter.write_tensor_data = write
        convert_checkpoint(ConversionConfig({str(folder)!r}, "safetensors", output_file={str(out)!r}))
        """, tmp_path / "driver.log")
    try:
        assert partial.parent == tmp_path and partial.stat().st_size > 0
    finally:
        kill(proc)
    assert out.read_bytes() == before  # the output was never touched
    # what the killed process left: one hidden *.partial beside it, half a file, never listed or served
    assert listing(tmp_path) == sorted(["m.gguf", partial.name, "driver.log"])
    assert partial.name.startswith(".m.gguf.") and partial.name.endswith(".partial") and not is_listable(partial.name)
    with pytest.raises(ModelFormatError):
        GGUFFile(partial)
    assert list(Catalog("models", tmp_path, [], read_model_info).scan()) == ["m.gguf"]
    # the next conversion writes the output whole beside the leftover
    convert(folder, out)
    assert GGUFFile(out).get("general.name") != "previous" and partial.exists()


def test_killed_export_leaves_no_site(tmp_path):
    web, models = write_web(tmp_path / "web"), tmp_path / "models"
    models.mkdir()
    for name in ("a.gguf", "b.gguf"):
        write_model(models / name, rows=256)
    site = tmp_path / "site"
    proc, partial = run_until_paused(f"""
        import shutil, time
        from pathlib import Path
        from wgllm.server import main
        real = shutil.copy2
        def copy2(src, dst, **kw):
            real(src, dst, **kw)
            if Path(dst).parent.name == "models":  # the demo and bundle copied, one model: stop until killed
                print("PAUSED", Path(dst).parent.parent, flush=True)
                time.sleep(600)
        shutil.copy2 = copy2
        main(["--export-static", {str(site)!r}, "--models-dir", {str(models)!r}, "--web-dir", {str(web)!r}])
        """, tmp_path / "driver.log")
    try:
        assert (partial / "index.html").is_file() and len(list((partial / "models").iterdir())) == 1
    finally:
        kill(proc)
    assert not site.exists()
    assert partial.parent == tmp_path and partial.name.startswith(".site.") and partial.name.endswith(".export")
    assert listing(tmp_path) == sorted(["models", "web", "driver.log", partial.name])
    # the leftover neither blocks nor joins the next export
    r = subprocess.run([sys.executable, "-m", "wgllm.server", "--export-static", str(site), "--models-dir", str(models), "--web-dir", str(web)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert listing(site / "models") == ["a.gguf", "b.gguf"] and (site / "api" / "models").is_file()
