"""Random-weight GGUF models for benchmarks on a machine that cannot receive the real files.

    python bench/synth_model.py --preset llama-7b --type Q4_0 --out /tmp/llama-7b-q4_0.gguf
    python bench/synth_model.py --preset llama-1.5b --dims n_layer=4 --out /tmp/small.gguf
    python bench/synth_model.py --save-skeleton REAL.gguf build/gpu-carry/skeletons/NAME
    python bench/synth_model.py --skeleton build/gpu-carry/skeletons/NAME --out /tmp/NAME.gguf

A model's layout comes from one of two places:
- a preset (PRESETS: Llama-shape dimensions), written through gguf's GGUFWriter with a synthetic
  SentencePiece-type vocabulary of the preset's size (<unk>, <s>, </s>, the 256 byte tokens, the
  word boundary, then placeholder pieces: it tokenizes and detokenizes, the text means nothing).
  The layer matrices get --type, the output head (or, when tied, the token embedding) --output-type
  (Q6_K by default, as llama.cpp quantises the output of a Q4_0 model);
- a skeleton: a real GGUF's header (metadata, tokenizer, tensor table) kept byte for byte in
  NAME.header with the table in NAME.json (--save-skeleton). The file written from it is the real
  model's file with only the tensor data replaced: same architecture, vocabulary, tensor types and
  shapes, so the same program runs on it and reads the same bytes.

Tensor data. Engine speed does not depend on weight values (no kernel branches on them), only on
their being finite: each matrix is random quants with one f16 scale for the whole tensor, chosen so
that an element's standard deviation is about 1/sqrt(k) (activations stay O(1) and the f16 KV cache
stays far from overflow); F16/BF16/F32 matrices are random mantissas and signs under an exponent of
that size; 1-D tensors (norm weights) are ones. The bytes come from numpy's PCG64 raw output
(~1 GB/s a core), drawn by a pool of processes that each write their pieces at their offsets in a
preallocated file (os.pwrite), which is renamed to --out once complete. Seeded: the same arguments
give the same file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, fields, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFWriter, TokenType

T = GGMLQuantizationType
ALIGNMENT = 32

# Each element is stored_scale * q, q the block's integer code; Q_STD is the standard deviation of
# q (with the minimum/offset fields set as _SCALE_FIELDS says) for uniformly random quant bytes.
# Q4_0: nibble - 8 over 0..15; Q8_0: int8; Q5_0: 5 bits - 16; Q4_1: nibble with m = -8 d (as Q4_0);
# Q4_K: sc * nibble - 7.5 m with six-bit sc, m; Q6_K: int8 sc * (6 bits - 32).
Q_STD = {T.Q4_0: 4.64, T.Q4_1: 4.64, T.Q5_0: 9.23, T.Q8_0: 73.9, T.Q4_K: 258.0, T.Q6_K: 1367.0}
# (byte offset in the block, multiple of d) of every f16 scale or minimum field
_SCALE_FIELDS = {
    T.Q4_0: ((0, 1.0),),
    T.Q4_1: ((0, 1.0), (2, -8.0)),
    T.Q5_0: ((0, 1.0),),
    T.Q8_0: ((0, 1.0),),
    T.Q4_K: ((0, 1.0), (2, 7.5)),
    T.Q6_K: ((208, 1.0),),
}
FLOAT_TYPES = (T.F32, T.F16, T.BF16)
MATRIX_TYPES = tuple(Q_STD) + FLOAT_TYPES
_PIECE_BYTES = 64 << 20  # one pool task draws at most this many bytes


@dataclass(frozen=True)
class LlamaShape:
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int
    tied: bool  # the token embedding doubles as the output head
    rope_base: float = 10000.0
    n_ctx: int = 4096

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


PRESETS = {
    # for tests and --quick runs on a CPU adapter
    "tiny": LlamaShape(n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=768, n_vocab=4096, tied=False),
    # Qwen2.5-1.5B's dimensions and 151936-token vocabulary (tied), in the Llama architecture
    "llama-1.5b": LlamaShape(n_embd=1536, n_layer=28, n_head=12, n_head_kv=2, n_ff=8960, n_vocab=151936, tied=True, rope_base=1e6),
    # Mistral-7B's dimensions (grouped-query attention, n_ff 14336, 32000 tokens, untied)
    "llama-7b": LlamaShape(n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, n_ff=14336, n_vocab=32000, tied=False),
}


@dataclass(frozen=True)
class Tensor:
    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]  # numpy order: (n_out, k) for a matrix
    offset: int  # from the start of the data section
    nbytes: int


def tensor_nbytes(ggml_type: GGMLQuantizationType, shape: tuple[int, ...]) -> int:
    block, size = GGML_QUANT_SIZES[ggml_type]
    if shape[-1] % block:
        raise ValueError(f"shape {shape}: the last axis must be a multiple of the {ggml_type.name} block of {block}")
    return math.prod(shape[:-1]) * (shape[-1] // block) * size


def _pad(n: int, align: int = ALIGNMENT) -> int:
    return -(-n // align) * align


# -- tensor data -------------------------------------------------------------------------------------


def random_rows(ggml_type: GGMLQuantizationType, n_rows: int, k: int, seed) -> np.ndarray:
    """GGUF bytes (uint8, n_rows * bytes_per_row) of n_rows random rows of a (?, k) matrix of
    `ggml_type`, element standard deviation about 1/sqrt(k) (module docstring)."""
    t = T(ggml_type)
    if t not in MATRIX_TYPES:
        raise ValueError(f"no random data for GGML type {t.name} (supported: {', '.join(m.name for m in MATRIX_TYPES)})")
    nbytes = tensor_nbytes(t, (n_rows, k))
    bits = np.random.Generator(np.random.PCG64(seed)).bit_generator.random_raw(-(-nbytes // 8)).view(np.uint8)[:nbytes]
    std = 1.0 / math.sqrt(k)
    if t in FLOAT_TYPES:
        e = round(math.log2(std)) - 1  # magnitudes in [2^e, 2^(e+1)): std within a factor of ~2
        if t == T.F16:
            w = bits.view("<u2")
            w &= 0x83FF
            w |= (15 + e) << 10
        elif t == T.BF16:
            w = bits.view("<u2")
            w &= 0x807F
            w |= (127 + e) << 7
        else:
            w = bits.view("<u4")
            w &= 0x807FFFFF
            w |= (127 + e) << 23
        return bits
    block, size = GGML_QUANT_SIZES[t]
    blocks = bits.reshape(-1, size)
    d = std / Q_STD[t]
    for offset, multiple in _SCALE_FIELDS[t]:
        blocks[:, offset : offset + 2] = np.frombuffer(np.float16(d * multiple).tobytes(), np.uint8)
    return bits


def tensor_piece(tensor: Tensor, row_start: int, row_end: int, seed) -> np.ndarray:
    """The bytes of rows [row_start, row_end) of `tensor` (a 1-D tensor is one row)."""
    if len(tensor.shape) == 1:
        if tensor.ggml_type not in (T.F32, T.F16):
            raise ValueError(f"{tensor.name}: 1-D tensor of type {tensor.ggml_type.name}; only F32 and F16 are written (as ones)")
        return np.ones(tensor.shape, np.float32 if tensor.ggml_type == T.F32 else np.float16).view(np.uint8)
    if len(tensor.shape) != 2:
        raise ValueError(f"{tensor.name}: shape {tensor.shape}: only 1-D and 2-D tensors are written")
    return random_rows(tensor.ggml_type, row_end - row_start, tensor.shape[1], seed)


def _pieces(tensors: list[Tensor]) -> list[tuple[int, int, int]]:
    """(tensor index, row start, row end) tasks of at most _PIECE_BYTES each, largest first."""
    tasks = []
    for i, t in enumerate(tensors):
        rows = t.shape[0] if len(t.shape) == 2 else 1
        per_row = t.nbytes // rows
        step = max(1, _PIECE_BYTES // per_row)
        tasks += [(i, a, min(a + step, rows), (min(a + step, rows) - a) * per_row) for a in range(0, rows, step)]
    return [task[:3] for task in sorted(tasks, key=lambda task: -task[3])]


def _write_piece(args) -> int:
    path, data_start, tensor, row_start, row_end, seed = args
    data = tensor_piece(tensor, row_start, row_end, seed)
    per_row = tensor.nbytes // (tensor.shape[0] if len(tensor.shape) == 2 else 1)
    fd = os.open(path, os.O_WRONLY)
    try:
        view, pos = memoryview(data), data_start + tensor.offset + row_start * per_row
        while view:
            written = os.pwrite(fd, view, pos)
            view, pos = view[written:], pos + written
    finally:
        os.close(fd)
    return data.nbytes


def write_model(out: Path, header: bytes, data_start: int, tensors: list[Tensor], seed: int, workers: int) -> None:
    """`header` (everything before the data section), then every tensor's data at data_start +
    offset, written by `workers` processes into a temporary file renamed to `out` when complete."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    end = data_start + max((t.offset + t.nbytes for t in tensors), default=0)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(b"\0" * (data_start - len(header)))
            f.truncate(_pad(end))  # the gaps between tensors stay zero (alignment padding)
        pieces = _pieces(tensors)
        seeds = np.random.SeedSequence(seed).spawn(len(pieces))
        tasks = [(str(tmp), data_start, tensors[i], a, b, s) for (i, a, b), s in zip(pieces, seeds)]
        if workers <= 1:
            for task in tasks:
                _write_piece(task)
        else:
            with get_context("fork").Pool(workers) as pool:
                for _ in pool.imap_unordered(_write_piece, tasks):
                    pass
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


# -- layouts -----------------------------------------------------------------------------------------


def _vocab(n_vocab: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """tokens, scores, token types of a synthetic SentencePiece-type vocabulary."""
    if n_vocab < 260:
        raise ValueError(f"n_vocab = {n_vocab}: the synthetic vocabulary needs at least 260 tokens (3 special, 256 bytes, the word boundary)")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += ["\u2581"] + [f"\u2581w{i}" for i in range(n_vocab - len(tokens) - 1)]
    types = np.full(n_vocab, TokenType.NORMAL, np.int32)
    types[0], types[1:3], types[3:259] = TokenType.UNKNOWN, TokenType.CONTROL, TokenType.BYTE
    scores = -np.arange(n_vocab, dtype=np.float32)
    return tokens, scores, types


def preset_tensors(shape: LlamaShape, layer_type: T, output_type: T, embd_type: T) -> list[tuple[str, T, tuple[int, ...]]]:
    """(name, type, numpy shape) of a Llama-architecture model, in llama.cpp's names."""
    s, hd = shape, shape.head_dim
    norm = (T.F32, (s.n_embd,))
    out = [("token_embd.weight", output_type if s.tied else embd_type, (s.n_vocab, s.n_embd))]
    for i in range(s.n_layer):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", *norm),
            (p + "attn_q.weight", layer_type, (s.n_head * hd, s.n_embd)),
            (p + "attn_k.weight", layer_type, (s.n_head_kv * hd, s.n_embd)),
            (p + "attn_v.weight", layer_type, (s.n_head_kv * hd, s.n_embd)),
            (p + "attn_output.weight", layer_type, (s.n_embd, s.n_head * hd)),
            (p + "ffn_norm.weight", *norm),
            (p + "ffn_gate.weight", layer_type, (s.n_ff, s.n_embd)),
            (p + "ffn_up.weight", layer_type, (s.n_ff, s.n_embd)),
            (p + "ffn_down.weight", layer_type, (s.n_embd, s.n_ff)),
        ]
    out.append(("output_norm.weight", *norm))
    if not s.tied:
        out.append(("output.weight", output_type, (s.n_vocab, s.n_embd)))
    return out


def preset_layout(name: str, shape: LlamaShape, layer_type: T, output_type: T, embd_type: T, header_path: Path) -> tuple[bytes, int, list[Tensor]]:
    """(header bytes, data start, tensors) of a preset model, the header written by GGUFWriter
    (through `header_path`, a scratch file)."""
    s = shape
    if s.n_embd % s.n_head or s.n_head % s.n_head_kv:
        raise ValueError(f"{name}: n_embd {s.n_embd}, n_head {s.n_head}, n_head_kv {s.n_head_kv}: heads must divide n_embd and KV heads the heads")
    w = GGUFWriter(header_path, "llama")
    w.add_name(f"synthetic {name} {layer_type.name} (random weights)")
    w.add_type("model")
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layer)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv)
    w.add_rope_dimension_count(s.head_dim)
    w.add_rope_freq_base(s.rope_base)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(s.n_vocab)
    tokens, scores, types = _vocab(s.n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores.tolist())
    w.add_token_types(types.tolist())
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    tensors, offset = [], 0
    for tname, t, tshape in preset_tensors(s, layer_type, output_type, embd_type):
        nbytes = tensor_nbytes(t, tshape)
        if t in FLOAT_TYPES and len(tshape) == 1:
            w.add_tensor_info(tname, tshape, np.dtype(np.float32 if t == T.F32 else np.float16), nbytes)
        else:
            byte_shape = (*tshape[:-1], nbytes // math.prod(tshape[:-1]))
            w.add_tensor_info(tname, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=t)
        tensors.append(Tensor(tname, t, tuple(tshape), offset, nbytes))
        offset += _pad(nbytes, w.data_alignment)  # GGUFWriter's own offsets (write_ti_data_to_file)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    header = Path(header_path).read_bytes()
    return header, _pad(len(header), w.data_alignment), tensors


def save_skeleton(gguf_path: Path, prefix: Path) -> None:
    """prefix.header: the bytes of `gguf_path` before its data section; prefix.json: its tensors."""
    r = GGUFReader(gguf_path)
    start = int(r.data_offset)
    tensors = [
        {"name": t.name, "type": T(t.tensor_type).name, "shape": [int(x) for x in reversed(t.shape.tolist())],
         "offset": int(t.data_offset) - start, "nbytes": int(t.n_bytes)}
        for t in r.tensors
    ]
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(gguf_path, "rb") as f:
        prefix.with_name(prefix.name + ".header").write_bytes(f.read(start))
    meta = {"source": Path(gguf_path).name, "source_bytes": Path(gguf_path).stat().st_size, "data_start": start, "tensors": tensors}
    prefix.with_name(prefix.name + ".json").write_text(json.dumps(meta, indent=1) + "\n")


def skeleton_layout(prefix: Path) -> tuple[bytes, int, list[Tensor], dict]:
    prefix = Path(prefix)
    header_path, json_path = prefix.with_name(prefix.name + ".header"), prefix.with_name(prefix.name + ".json")
    for p in (header_path, json_path):
        if not p.is_file():
            raise FileNotFoundError(f"skeleton {prefix}: {p} is missing (make it with --save-skeleton REAL.gguf {prefix})")
    meta = json.loads(json_path.read_text())
    header = header_path.read_bytes()
    if len(header) != meta["data_start"] or header[:4] != b"GGUF":
        raise ValueError(f"skeleton {prefix}: {header_path} holds {len(header)} bytes, expected a GGUF header of {meta['data_start']}")
    tensors = [Tensor(t["name"], T[t["type"]], tuple(t["shape"]), t["offset"], t["nbytes"]) for t in meta["tensors"]]
    for t in tensors:
        if tensor_nbytes(t.ggml_type, t.shape) != t.nbytes:
            raise ValueError(f"skeleton {prefix}: {t.name} {t.ggml_type.name} {t.shape} cannot take {t.nbytes} bytes")
    return header, meta["data_start"], tensors, meta


def _dims(text: str, base: LlamaShape) -> LlamaShape:
    names = {f.name: f.type for f in fields(LlamaShape)}
    changes = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in names or not value:
            raise ValueError(f"--dims {text!r}: {item!r} is not KEY=VALUE with KEY one of {', '.join(names)}")
        changes[key] = value.lower() in ("1", "true", "yes") if key == "tied" else (float(value) if key == "rope_base" else int(value))
    return replace(base, **changes)


def _type(name: str) -> T:
    try:
        t = T[name.upper()]
    except KeyError:
        t = None
    if t not in MATRIX_TYPES:
        raise argparse.ArgumentTypeError(f"{name!r} is not a supported matrix type ({', '.join(m.name for m in MATRIX_TYPES)})")
    return t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(PRESETS))
    src.add_argument("--skeleton", type=Path, metavar="PREFIX", help="PREFIX.header + PREFIX.json from --save-skeleton")
    src.add_argument("--save-skeleton", nargs=2, type=Path, metavar=("GGUF", "PREFIX"), help="write PREFIX.header and PREFIX.json of a real GGUF, then exit")
    ap.add_argument("--dims", default="", help="preset overrides, e.g. n_layer=4,n_vocab=32000 (keys: " + ", ".join(f.name for f in fields(LlamaShape)) + ")")
    ap.add_argument("--type", type=_type, default=T.Q4_0, help="layer matrices' type (default Q4_0)")
    ap.add_argument("--output-type", type=_type, default=T.Q6_K, help="output head's type, or the token embedding's when tied (default Q6_K)")
    ap.add_argument("--embd-type", type=_type, default=None, help="untied token embedding's type (default: --type)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    if args.save_skeleton:
        save_skeleton(*args.save_skeleton)
        print(f"skeleton of {args.save_skeleton[0]} -> {args.save_skeleton[1]}.header/.json")
        return
    if args.out is None:
        ap.error("--out is required with --preset or --skeleton")
    start = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.preset:
        shape = _dims(args.dims, PRESETS[args.preset])
        scratch = args.out.with_name(f".{args.out.name}.{os.getpid()}.header")
        try:
            header, data_start, tensors = preset_layout(args.preset, shape, args.type, args.output_type, args.embd_type or args.type, scratch)
        finally:
            scratch.unlink(missing_ok=True)
        what = f"preset {args.preset} {shape}"
    else:
        header, data_start, tensors, meta = skeleton_layout(args.skeleton)
        what = f"skeleton of {meta['source']}"
    write_model(args.out, header, data_start, tensors, args.seed, args.workers)
    size = args.out.stat().st_size
    print(f"{args.out}: {size / 1e9:.3f} GB, {len(tensors)} tensors, {what}, {time.perf_counter() - start:.1f} s ({args.workers} workers)", flush=True)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        print(f"synth_model: error: {e}", file=sys.stderr)
        sys.exit(2)
