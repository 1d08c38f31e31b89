"""Fixtures for tests/browser/weight_types.spec.ts: a tiny Llama whose weights are the GGUF types
wgllm reads but does not write (Q5_1 aside, which it writes too): Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL,
IQ4_XS, and what the PYTHON GPU engine makes of it.

    python tests/browser/weight_types_fixtures.py OUT_DIR

There is no quantiser for most of these types, so the tiny Llama (hidden 256, n_ff 512: whole
256-element blocks) is converted at F32 and each 2-D weight is replaced by random valid blocks of its
type (random quant bytes, f16 scale fields set to finite values sized for weights of about 0.1).
Layer 0 mixes types within attention (q, k, v apart) and the MLP (gate, up apart); layer 1 has
q/k/v of one type (one stacked matmul) and gate/up of one type (one matmul of row pairs); the tied
token_embd is Q3_K (its scales decoded at repack, used by the embedding and the output matmul).
expected.json holds engine_fixtures.tiny_expected for both kernel families: greedy and sampled
tokens, all-row and decode logits, and wgllm.reference's logits (numpy dequantisers), and, for the
browser's 1-D dequantiser, random blocks of every type with quant.dequantize's values. Skipped when
the inputs (this script, engine_fixtures.py, the shaders, the Python engine) are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "py"))

import numpy as np  # noqa: E402
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T  # noqa: E402

TYPES = {  # tensor name -> type
    "token_embd.weight": T.Q3_K,
    "blk.0.attn_q.weight": T.Q5_1,
    "blk.0.attn_k.weight": T.IQ4_NL,
    "blk.0.attn_v.weight": T.Q5_K,
    "blk.0.attn_output.weight": T.IQ4_XS,
    "blk.0.ffn_gate.weight": T.Q3_K,
    "blk.0.ffn_up.weight": T.Q2_K,
    "blk.0.ffn_down.weight": T.Q5_K,
    "blk.1.attn_q.weight": T.Q3_K,
    "blk.1.attn_k.weight": T.Q3_K,
    "blk.1.attn_v.weight": T.Q3_K,
    "blk.1.attn_output.weight": T.Q2_K,
    "blk.1.ffn_gate.weight": T.Q5_1,
    "blk.1.ffn_up.weight": T.Q5_1,
    "blk.1.ffn_down.weight": T.IQ4_XS,
}
# Each type's f16 fields (byte offset in the block -> largest magnitude): weights come out within
# about 0.1 (e.g. IQ4_XS: |d * (sc - 32) * KV| <= d * 32 * 127).
F16_FIELDS = {
    T.Q5_1: {0: 3e-3, 2: 0.05},
    T.Q2_K: {80: 2e-3, 82: 3e-3},
    T.Q3_K: {108: 6e-4},
    T.Q5_K: {0: 4e-5, 2: 1e-3},
    T.IQ4_NL: {0: 6e-4},
    T.IQ4_XS: {0: 2e-5},
}
CONFIG = {"hidden_size": 256, "intermediate_size": 512, "head_dim": 64}
# web/src/weights.ts's dequantize (1-D tensors: norms, biases, position tables) against quant.dequantize:
# two random valid blocks of every block type Python dequantises (f16 fields finite and of both signs).
DEQUANT_FIELDS = {**F16_FIELDS, T.Q8_0: {0: 1.0}, T.Q4_0: {0: 1.0}, T.Q4_1: {0: 1.0, 2: 1.0}, T.Q5_0: {0: 1.0}, T.Q4_K: {0: 1.0, 2: 1.0}, T.Q6_K: {208: 1.0}}


def dequantize_cases(seed: int = 5) -> list[dict]:
    """Per type: the raw bytes of two blocks and Python's float32 values as uint32 bit patterns."""
    from wgllm.quant import SUPPORTED_TYPES, dequantize

    rng = np.random.default_rng(seed)
    cases = []
    for t in SUPPORTED_TYPES:
        block, size = GGML_QUANT_SIZES[t]
        if t in (T.F32, T.F16, T.BF16):  # finite floats of both signs and a wide range of magnitudes
            values = (rng.standard_normal(64) * 10.0 ** rng.integers(-6, 4, 64)).astype({T.F32: "<f4", T.F16: "<f2", T.BF16: "<f4"}[t])
            raw = (values.view("<u4") >> 16).astype("<u2").view(np.uint8) if t == T.BF16 else values.view(np.uint8)
        else:
            raw = rng.integers(0, 256, (2, size), dtype=np.uint8)
            for offset, top in DEQUANT_FIELDS[t].items():
                field = (rng.uniform(0.2, 1.0, 2) * top * rng.choice([-1.0, 1.0], 2)).astype("<f2")
                raw[:, offset : offset + 2] = field.view(np.uint8).reshape(-1, 2)
            raw = raw.ravel()
        n = len(raw) // size * block
        want = dequantize(raw, t, (n,)).astype(np.float32)
        assert np.isfinite(want).all(), t.name
        cases.append({"type": t.name, "n": n, "raw": raw.tolist(), "bits": want.view(np.uint32).tolist()})
    return cases


def random_blocks(rng, t, shape) -> np.ndarray:
    """Random valid GGUF bytes (rows, row bytes) of a `shape` weight of type t."""
    block, size = GGML_QUANT_SIZES[t]
    n_blocks = int(np.prod(shape)) // block
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    for offset, top in F16_FIELDS[t].items():
        field = (rng.uniform(0.2, 1.0, n_blocks) * top * rng.choice([-1.0, 1.0], n_blocks)).astype("<f2")
        raw[:, offset : offset + 2] = field.view(np.uint8).reshape(-1, 2)
    return raw.reshape(shape[0], -1)


def write_typed(src: Path, dst: Path, seed: int = 11) -> Path:
    """A copy of the F32 GGUF `src` with the weights of TYPES replaced by random blocks of their type."""
    import gguf

    rng = np.random.default_rng(seed)
    r = gguf.GGUFReader(src)
    assert set(TYPES) <= {t.name for t in r.tensors}, sorted(set(TYPES) - {t.name for t in r.tensors})
    w = gguf.GGUFWriter(str(dst), r.fields["general.architecture"].contents())
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        w.add_key_value(f.name, f.contents(), f.types[0], sub_type=f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None)
    for t in r.tensors:
        data = np.array(t.data)
        if t.name in TYPES:
            raw = random_blocks(rng, TYPES[t.name], data.shape)
            w.add_tensor(t.name, raw, raw_shape=raw.shape, raw_dtype=TYPES[t.name])
        else:
            w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


def inputs_digest() -> str:
    h = hashlib.sha256()
    here = Path(__file__).parent
    files = [Path(__file__), here / "engine_fixtures.py", *sorted((REPO / "shaders").glob("*.wgsl")), *sorted((REPO / "py" / "wgllm" / "gpu").glob("*.py"))]
    for f in files + [REPO / "py/wgllm/model.py", REPO / "py/wgllm/quant.py"]:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    digest = inputs_digest()
    expected_path = out / "expected.json"
    if expected_path.is_file() and json.loads(expected_path.read_text()).get("digest") == digest:
        return
    from engine_fixtures import SAMPLING, tiny_expected
    from gpu_tolerances import MODEL_LOGITS_REL
    from tiny_models import convert_tiny

    from wgllm.gguf_io import GGUFFile

    f32 = convert_tiny("llama", 32, out / "llama-f32.tmp", **CONFIG)
    path = write_typed(f32, out / "types.tmp").rename(out / "llama-types.gguf")
    f32.unlink()
    types = {name: t.ggml_type.name for name, t in GGUFFile(path).tensors.items() if name in TYPES}
    assert types == {name: t.name for name, t in TYPES.items()}, types
    expected = {"digest": digest, "sampling": SAMPLING, "logits_rel": MODEL_LOGITS_REL, "types": types, "dequantize": dequantize_cases()}
    for kernels in ("cpu", "gpu"):
        expected[kernels] = tiny_expected(path, kernels)
    tmp = expected_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(expected))
    tmp.rename(expected_path)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
