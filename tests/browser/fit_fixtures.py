"""Fixtures for tests/browser/model_fit.spec.ts: the header of a 7B Llama-shape Q4_0 model (bench/
synth_model.py's llama-7b preset, 4.1 GB of tensors) without its tensor data, which the spec's
server makes up as it is asked for, and what Python computes of it independently.

    python tests/browser/fit_fixtures.py OUT_DIR

Writes OUT_DIR/llama-7b-q4_0.header (every byte before the data section, alignment padding included)
and OUT_DIR/llama-7b-q4_0.json: data_start, file_size and weight_bytes (the bytes of every tensor
the forward pass reads, which the GPU weights hold once repacked: Q4_0 and Q6_K split their blocks
into fields without adding or dropping a byte; F32 norms stay F32).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from synth_model import PRESETS, T, preset_layout  # noqa: E402


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / ".llama-7b-q4_0.header.tmp"
    header, data_start, tensors = preset_layout("llama-7b", PRESETS["llama-7b"], T.Q4_0, T.Q6_K, T.Q4_0, scratch)
    scratch.unlink(missing_ok=True)
    end = data_start + max(t.offset + t.nbytes for t in tensors)
    (out / "llama-7b-q4_0.header").write_bytes(header + b"\0" * (data_start - len(header)))
    summary = {"data_start": data_start, "file_size": -(-end // 32) * 32, "weight_bytes": sum(t.nbytes for t in tensors)}
    (out / "llama-7b-q4_0.json").write_text(json.dumps(summary))
    print(f"wrote the llama-7b Q4_0 header ({data_start} bytes of a {summary['file_size']}-byte file) to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
