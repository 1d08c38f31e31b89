"""`wgllm bench` produces every figure it promises, and counts weight bytes as the file says.

No speed is asserted (speeds belong in bench/results); the checks are on what the run reports.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys

from gguf import GGUFReader
from tiny_models import convert_tiny

KEYS = ("adapter", "load_s", "prefill_tok_s", "decode_tok_s", "weight_bytes_per_token", "copy_bandwidth_gb_s", "decode_bandwidth_fraction")


def test_bench_cli_writes_every_figure(tmp_path):
    model = convert_tiny("llama", 8, tmp_path / "llama-8.gguf")
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "wgllm.cli", "bench", "--model", str(model), "--prompt-tokens", "16", "--gen-tokens", "8", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "decode / copy bandwidth" in run.stdout
    result = json.loads(out.read_text())
    for key in KEYS[1:]:
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert isinstance(result["adapter"], str) and result["adapter"]
    assert result["kv_cache_type"] == "f16" and "KV cache" in run.stdout  # lavapipe has shader-f16
    assert result["kernels"] == "cpu" and "kernels" in run.stdout  # lavapipe is a CPU adapter
    # the tiny llama's decode step in the cpu family: embedding, 2 layers of 8 launches (attn_norm, qkv,
    # rope q + rope k into the cache + v into the cache, attention, o + residual, ffn_norm, gate+up with
    # the GLU, down + residual), the output_norm, the last row's copy, the head and the sampler (the gpu
    # family norms inside the matmuls: test_bench_kernels_gpu_is_recorded)
    assert result["layers"] == 2 and result["dispatches_per_decode_step"] == 1 + 2 * 8 + 4
    names = [t.name for t in GGUFReader(model).tensors]
    assert "output.weight" not in names  # the tiny llama ties its output to the embedding
    # tied output: every tensor is read in full once per token (llama.cpp's own reader counts them)
    assert result["weight_bytes_per_token"] == sum(int(t.n_bytes) for t in GGUFReader(model).tensors)
    # copy is sampled before prefill, between prefill and decode, halfway through decode and after it
    samples = result["copy_bandwidth_samples_gb_s"]
    assert len(samples) == 4 and all(math.isfinite(g) and g > 0 for g in samples)
    assert result["copy_bandwidth_gb_s"] == statistics.median(samples)
    rate = result["weight_bytes_per_token"] * result["decode_tok_s"] / 1e9
    assert math.isclose(result["decode_bandwidth_fraction"], rate / result["copy_bandwidth_gb_s"], rel_tol=1e-9)


def test_bench_force_f32_keeps_the_kv_cache_f32(tmp_path):
    model = convert_tiny("llama", 8, tmp_path / "llama-8.gguf")
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "wgllm.cli", "bench", "--model", str(model), "--prompt-tokens", "4", "--gen-tokens", "2", "--force-f32", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(out.read_text())["kv_cache_type"] == "f32"


def test_bench_kernels_gpu_is_recorded(tmp_path):
    model = convert_tiny("llama", 8, tmp_path / "llama-8.gguf")
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "wgllm.cli", "bench", "--model", str(model), "--prompt-tokens", "4", "--gen-tokens", "2", "--kernels", "gpu", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    # embedding, 2 layers of 6 launches (qkv with the attn_norm, rope q + rope k into the cache + v into
    # the cache, attention, o + residual, gate+up with the ffn_norm and the GLU, down + residual), the
    # head with the output_norm, and the sampler
    assert result["kernels"] == "gpu" and result["dispatches_per_decode_step"] == 1 + 2 * 6 + 2


def test_bench_rejects_too_few_tokens(tmp_path):
    model = convert_tiny("llama", 8, tmp_path / "llama-8.gguf")
    run = subprocess.run(
        [sys.executable, "-m", "wgllm.cli", "bench", "--model", str(model), "--gen-tokens", "1"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 2 and "--gen-tokens must be at least 2" in run.stderr
