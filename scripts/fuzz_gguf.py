"""Fuzz both GGUF readers: Python's GGUFFile (+ ModelConfig.from_gguf, + dequantising small
tensors) and the bundle's streaming readGGUF (+ every tensor's bytes, + modelConfigFromHeader),
with the same mutated and random inputs, and report outcomes and peak memory.

    python scripts/fuzz_gguf.py seeds DIR [--no-tiny]      write the seed files into DIR
    python scripts/fuzz_gguf.py run --seeds DIR -n 100000 [--only python|node] [--json OUT]

Seeds: a synthetic file with every value type and general.alignment = 64, tiny converted models
(tests/py/tiny_models.py), and the headers of the real SmolLM2 and Gemma-3 files (cached by
wgllm.assets): cut to a few tensors whose bytes are copied (their vocabularies trimmed to 64
entries, so most inputs parse in milliseconds), and in full with the tensor data cut off.
Input i is derived from (--seed, i) alone, so any input can be rebuilt from its number.

Each input ends in one outcome: accepted, rejected (ModelFormatError naming the file), crash (any
other exception, an allocation failure, a driver death) or timeout (past --deadline seconds).
Crashes and timeouts are bugs in the readers. The Node side runs in one process for the whole run,
as a page loading model after model would; it is killed and the run stops if its RSS passes
--node-rss-limit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ESBUILD = ROOT / "web" / "node_modules" / ".bin" / "esbuild"
NODE_DRIVER = ROOT / "scripts" / "fuzz_gguf_node.ts"
OUTCOMES = ("accepted", "rejected", "crash", "timeout")
MiB = 1 << 20

# ---------------------------------------------------------------------------------------- seeds


@dataclass
class Seed:
    name: str
    data: bytes
    fields: dict[str, list[tuple[int, int]]]  # kind -> [(offset, size)]: where each header field lies
    tensors: list[dict]  # per tensor: dims [(offset)], type offset, offset offset
    header_end: int
    weight: float


def walk(data: bytes, strings_per_array: int = 16) -> tuple[dict, list[dict], int]:
    """Where the fields of a valid GGUF header lie (the seeds are valid, so nothing is checked)."""
    fields: dict[str, list[tuple[int, int]]] = {}
    pos = 0

    def mark(kind: str, size: int) -> int:
        nonlocal pos
        fields.setdefault(kind, []).append((pos, size))
        value = int.from_bytes(data[pos : pos + size], "little")
        pos += size
        return value

    def string(kind: str) -> str:
        nonlocal pos
        n = mark(kind, 8)
        pos += n
        return data[pos - n : pos].decode("utf-8", "replace")

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    pos = 4
    mark("version", 4)
    n_tensors = mark("count", 8)
    n_kv = mark("count", 8)
    for _ in range(n_kv):
        key = string("length")
        vtype = mark("value_type", 4)
        if vtype in sizes:
            mark("alignment" if key == "general.alignment" else f"scalar{vtype}", sizes[vtype])
        elif vtype == 8:
            string("length")
        else:  # array (the seeds hold no nested ones)
            itype = mark("array_type", 4)
            count = mark("array_length", 8)
            if itype == 8:
                for i in range(count):
                    if i < strings_per_array:
                        string("length")
                    else:
                        pos += 8 + int.from_bytes(data[pos : pos + 8], "little")
            else:
                pos += count * sizes[itype]
    tensors = []
    for _ in range(n_tensors):
        string("length")
        n_dims = mark("n_dims", 4)
        dims = [pos + 8 * d for d in range(n_dims)]
        for _ in range(n_dims):
            mark("dim", 8)
        t = {"dims": dims, "type": pos, "offset": pos + 4}
        mark("ggml_type", 4)
        mark("offset", 8)
        tensors.append(t)
    return fields, tensors, pos


def _synthetic(path: Path) -> None:
    """Every value type, nested-free arrays of each, two tensors, and general.alignment = 64."""
    import numpy as np
    from gguf import GGMLQuantizationType as T, GGUFValueType as V, GGUFWriter

    from wgllm import quant

    rng = np.random.default_rng(0)
    w = GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    for name, value, vtype in [("u8", 7, V.UINT8), ("i8", -7, V.INT8), ("u16", 700, V.UINT16), ("i16", -700, V.INT16),
                               ("u32", 70000, V.UINT32), ("i32", -70000, V.INT32), ("f32", 1.5, V.FLOAT32), ("b", True, V.BOOL),
                               ("u64", 2**40, V.UINT64), ("i64", -(2**40), V.INT64), ("f64", 2.25, V.FLOAT64), ("s", "héllo", V.STRING)]:
        w.add_key_value(f"x.{name}", value, vtype)
    w.add_key_value("x.bools", [True, False, True], V.ARRAY, V.BOOL)
    w.add_key_value("x.ints", [1, -2, 3], V.ARRAY, V.INT32)
    w.add_key_value("tokenizer.ggml.tokens", ["a", "bc", "\u00e9", "\ufeff//"], V.ARRAY, V.STRING)
    w.add_key_value("tokenizer.ggml.scores", [0.5, -1.0, 2.0, 0.0], V.ARRAY, V.FLOAT32)
    w.add_tensor("a.weight", rng.standard_normal((2, 5)).astype(np.float32))
    q8 = quant.quantize(rng.standard_normal((3, 64)).astype(np.float32), T.Q8_0)
    w.add_tensor("b.weight", q8, raw_dtype=T.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _real_header(src: Path, out_cut: Path, out_full: Path, keep_bytes: int = 1 << 20, head_bytes: int = 8 << 20) -> None:
    """From the first `head_bytes` of a real model: (cut) its metadata with every array trimmed to
    64 entries and its smallest tensors (real bytes, up to keep_bytes in all), written back to
    back; (full) its whole header, tensor data cut off 4 KiB in."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(src, "rb") as f:
        data = f.read(head_bytes)
    pos = 0

    def u(n: int) -> int:
        nonlocal pos
        pos += n
        return int.from_bytes(data[pos - n : pos], "little")

    def raw(n: int) -> bytes:
        nonlocal pos
        pos += n
        return data[pos - n : pos]

    def string() -> bytes:
        n = u(8)
        return n.to_bytes(8, "little") + raw(n)

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    head = raw(8)  # magic, version
    n_tensors, n_kv = u(8), u(8)
    body, alignment = bytearray(), 32
    for _ in range(n_kv):
        key = string()
        vtype = u(4)
        body += key + vtype.to_bytes(4, "little")
        if vtype in sizes:
            value = raw(sizes[vtype])
            if key[8:] == b"general.alignment":
                alignment = int.from_bytes(value, "little")
            body += value
        elif vtype == 8:
            body += string()
        else:
            itype, count = u(4), u(8)
            kept = min(count, 64)
            body += itype.to_bytes(4, "little") + kept.to_bytes(8, "little")
            if itype == 8:
                for i in range(count):
                    value = string()
                    if i < kept:
                        body += value
            else:
                body += raw(count * sizes[itype])[: kept * sizes[itype]]
    infos = []
    for _ in range(n_tensors):
        name, n_dims = string(), u(4)
        dims = [u(8) for _ in range(n_dims)]
        ggml_type, offset = u(4), u(8)
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        n_elements = 1
        for d in dims:
            n_elements *= d
        infos.append((name, dims, ggml_type, offset, n_elements // block * type_size))
    if pos > len(data):
        raise ValueError(f"{src}: the header is longer than {head_bytes} bytes")
    data_start = -(-pos // alignment) * alignment
    out_full.write_bytes(data[: data_start + 4096])

    pad = lambda n: -(-n // alignment) * alignment  # noqa: E731
    kept_infos, blobs, at = bytearray(), [], 0
    chosen = []
    for info in sorted(infos, key=lambda t: t[4]):
        if at + pad(info[4]) > keep_bytes:
            break
        chosen.append((info, at))
        at += pad(info[4])
    with open(src, "rb") as f:
        for (name, dims, ggml_type, offset, n_bytes), new_offset in chosen:
            kept_infos += name + len(dims).to_bytes(4, "little") + b"".join(d.to_bytes(8, "little") for d in dims)
            kept_infos += ggml_type.to_bytes(4, "little") + new_offset.to_bytes(8, "little")
            f.seek(data_start + offset)
            blobs.append(f.read(n_bytes).ljust(pad(n_bytes), b"\0"))
    header = head + len(chosen).to_bytes(8, "little") + n_kv.to_bytes(8, "little") + bytes(body) + bytes(kept_infos)
    out_cut.write_bytes(header.ljust(pad(len(header)), b"\0") + b"".join(blobs))


TINY = (("llama", 4), ("gemma3", 8), ("gemma2", 16), ("phi2", 32), ("gpt2", 8))


def make_seeds(folder: Path, tiny: tuple[tuple[str, int], ...] = TINY) -> list[Path]:
    """Write the seed files into `folder` (real models are fetched into the wgllm cache if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "tests" / "py"))
    from assets import gemma3_path, smollm2_path

    _synthetic(folder / "synthetic.gguf")
    for name, src in (("smollm2", smollm2_path()), ("gemma3", gemma3_path())):
        _real_header(src, folder / f"real-{name}-cut.gguf", folder / f"real-{name}-full-header.gguf")
    if tiny:
        from tiny_models import convert_tiny

        for arch, bits in tiny:
            convert_tiny(arch, bits, folder / f"tiny-{arch}-{bits}.gguf")
    return sorted(folder.glob("*.gguf"))


def load_seeds(folder: Path) -> list[Seed]:
    seeds = []
    for path in sorted(folder.glob("*.gguf")):
        data = path.read_bytes()
        fields, tensors, header_end = walk(data)
        # a full real header costs ~1-2 s to parse in Python: 1 input in 200 comes from one
        weight = 0.1 if "full-header" in path.name else 4.0 if path.name.startswith("real-") else 10.0
        seeds.append(Seed(path.name, data, fields, tensors, header_end, weight))
    if not seeds:
        raise SystemExit(f"fuzz: no *.gguf seeds in {folder} (run: python {sys.argv[0]} seeds {folder})")
    return seeds


# ------------------------------------------------------------------------------------ mutations

Splice = tuple[int, int, bytes]  # (at, delete, insert), applied in order
U64S = [0, 1, 2, 255, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**53 + 1, 2**60, 2**63, 2**64 - 1]
U32S = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 255, 2**31, 2**32 - 1]
GGML_TYPES = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 20, 24, 28, 29, 30, 31, 34, 39, 41, 42, 1000, 2**32 - 1]
# dims (ggml order) whose product reaches 2^64 or more; every first dim is a multiple of 256
OVERFLOW_DIMS = [[2**32, 2**32], [2**63, 2], [2**64 - 256, 2**64 - 256], [256, 2**56, 2**8], [2**33, 2**31, 2],
                 [2**62, 4, 1, 1], [3 * 2**62, 3], [2**64 - 256, 1, 1, 2]]


def _pick_field(rng: random.Random, seed: Seed, kinds: list[str]) -> tuple[int, int] | None:
    pool = [k for k in kinds if seed.fields.get(k)]
    return rng.choice(seed.fields[rng.choice(pool)]) if pool else None


def _overwrite(at: int, value: int, size: int) -> Splice:
    return (at, size, (value % (1 << (8 * size))).to_bytes(size, "little"))


def mutate(rng: random.Random, seed: Seed, seeds: list[Seed]) -> tuple[str, list[Splice]]:
    """1-4 mutations of `seed`: same-size overwrites first, then at most one that moves bytes."""
    n = len(seed.data)
    kinds, splices = [], []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        kind = rng.choice(["flip", "u64", "u32", "ggml_type", "dims_overflow", "dims", "offset", "alignment", "scalar",
                           "truncate", "truncate", "insert", "delete", "crossover"])
        if kind == "flip":
            at = rng.randrange(seed.header_end) if rng.random() < 0.8 else rng.randrange(n)
            splices.append((at, 1, bytes([seed.data[at] ^ rng.randrange(1, 256)])))
        elif kind == "u64":
            f = _pick_field(rng, seed, ["count", "length", "array_length", "dim", "offset"])
            if f:
                old = int.from_bytes(seed.data[f[0] : f[0] + 8], "little")
                splices.append(_overwrite(f[0], rng.choice(U64S + [n, n // 8, old + 1, old - 1, old * 2, old + 2**32]), 8))
        elif kind == "u32":
            f = _pick_field(rng, seed, ["version", "value_type", "array_type", "n_dims", "ggml_type"])
            if f:
                splices.append(_overwrite(f[0], rng.choice(U32S), 4))
        elif kind in ("ggml_type", "dims_overflow", "dims", "offset") and seed.tensors:
            t = rng.choice(seed.tensors)
            if kind == "ggml_type":
                splices.append(_overwrite(t["type"], rng.choice(GGML_TYPES), 4))
            elif kind == "dims_overflow":
                dims = rng.choice([d for d in OVERFLOW_DIMS if len(d) <= max(len(t["dims"]), 2)])
                for at, d in zip(t["dims"], dims):
                    splices.append(_overwrite(at, d, 8))
            elif kind == "dims":
                at = rng.choice(t["dims"])
                old = int.from_bytes(seed.data[at : at + 8], "little")
                splices.append(_overwrite(at, rng.choice([old + 1, old - 1, old * 2, old // 2, old * 256, 0, 32, 256]), 8))
            else:
                old = int.from_bytes(seed.data[t["offset"] : t["offset"] + 8], "little")
                other = int.from_bytes(seed.data[(o := rng.choice(seed.tensors)["offset"]) : o + 8], "little")
                splices.append(_overwrite(t["offset"], rng.choice([0, other, old + 1, old + 32, old - 32, old + 64, n, 2**63, 2**64 - 32]), 8))
        elif kind == "alignment":
            f = _pick_field(rng, seed, ["alignment"])
            if f:
                splices.append(_overwrite(f[0], rng.choice([0, 1, 3, 16, 48, 64, 4096, 2**31, 2**32 - 1]), f[1]))
        elif kind == "scalar":
            f = _pick_field(rng, seed, [k for k in seed.fields if k.startswith("scalar")])
            if f:
                specials = [b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff", b"\xff\xff\x7f\x7f"]  # f32 nan, ±inf, max
                value = rng.choice(specials) if f[1] == 4 and rng.random() < 0.3 else rng.randbytes(f[1])
                if rng.random() < 0.4:
                    value = rng.choice([0, 1, 2**(8 * f[1]) - 1, 2**(8 * f[1] - 1)]).to_bytes(f[1], "little")
                splices.append((f[0], f[1], value))
        elif kind == "truncate":
            r = rng.random()
            edges = [at for fs in seed.fields.values() for at, _ in fs]
            at = rng.choice(edges) if r < 0.3 else rng.randrange(seed.header_end + 1) if r < 0.7 else rng.randrange(n)
            kinds.append(kind)
            return "+".join(kinds), splices + [(at, n - at, b"")]
        elif kind == "insert":
            kinds.append(kind)
            at = rng.randrange(seed.header_end + 1)
            return "+".join(kinds), splices + [(at, 0, rng.randbytes(rng.randint(1, 16)))]
        elif kind == "delete":
            kinds.append(kind)
            at = rng.randrange(seed.header_end)
            return "+".join(kinds), splices + [(at, min(rng.randint(1, 16), n - at), b"")]
        elif kind == "crossover":
            other = rng.choice(seeds)
            length = rng.randint(1, 64)
            src = rng.randrange(max(1, other.header_end - length))
            at = rng.randrange(max(1, seed.header_end - length))
            piece = other.data[src : src + length]
            splices.append((at, min(len(piece), n - at), piece))
        kinds.append(kind)
    return "+".join(kinds), splices


def make_input(base_seed: int, i: int, seeds: list[Seed]) -> tuple[str, int, list[Splice], int, bool]:
    """Input i: (mutation kinds, seed index or -1, splices, stream chunk size (0: one chunk), size known).
    Streams are cut in at most 4096 chunks (a 1-byte chunk is kept for inputs up to 4 KiB)."""
    rng = random.Random(base_seed * 1_000_003 + i)
    chunk = rng.choice([0, 1, 7, 64, 4096, 65536, 1 << 20])
    known = rng.random() < 0.5
    kinds, s, splices = _mutated(rng, seeds)
    size = (len(seeds[s].data) if s >= 0 else 0) + sum(len(ins) - delete for _, delete, ins in splices)
    if chunk:
        chunk = max(chunk, -(-size // 4096))
    return kinds, s, splices, chunk, known


def _mutated(rng: random.Random, seeds: list[Seed]) -> tuple[str, int, list[Splice]]:
    r = rng.random()
    if r < 0.04:  # random bytes
        return "random", -1, [(0, 0, rng.randbytes(rng.randint(0, 2048)))]
    if r < 0.10:  # a valid magic (and a version) followed by random bytes
        head = b"GGUF" + struct.pack("<I", rng.choice([2, 3, 3, 1, 2**24 * 3]))
        return "magic+random", -1, [(0, 0, head + rng.randbytes(rng.randint(0, 2048)))]
    s = rng.choices(range(len(seeds)), weights=[x.weight for x in seeds])[0]
    seed = seeds[s]
    if r < 0.14:  # a valid prefix up to a field, then random bytes
        at = rng.choice([at for fs in seed.fields.values() for at, _ in fs])
        return "prefix+random", s, [(at, len(seed.data) - at, rng.randbytes(rng.randint(1, 256)))]
    if r < 0.15:
        return "unchanged", s, []
    kinds, splices = mutate(rng, seed, seeds)
    return kinds, s, splices


def apply(data: bytes, splices: list[Splice]) -> bytes:
    for at, delete, insert in splices:
        data = data[:at] + insert + data[at + delete :]
    return data


# ------------------------------------------------------------------------------------- runners


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Deadline(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Deadline()


@dataclass
class Tally:
    outcomes: Counter = field(default_factory=Counter)
    stages: Counter = field(default_factory=Counter)  # "rejected:header", ...
    failures: dict = field(default_factory=dict)  # normalised message -> (count, first input, example)
    rss: list = field(default_factory=list)  # (input index, bytes)
    codes: bytearray = field(default_factory=bytearray)  # per input: index into OUTCOMES
    seconds: float = 0.0
    verbose: bool = False

    def add(self, i: int, outcome: str, stage: str, message: str, kinds: str) -> None:
        if self.verbose:
            print(f"input {i} [{kinds}]: {outcome} {stage} {message}", file=sys.stderr)
        self.outcomes[outcome] += 1
        self.codes.append(OUTCOMES.index(outcome))
        if outcome == "rejected":
            self.stages[f"rejected:{stage}"] += 1
        if outcome in ("crash", "timeout"):
            key = re.sub(r"\d+", "N", message)[:160]
            count, first, example = self.failures.get(key, (0, i, f"[{kinds}] {message}"))
            self.failures[key] = (count + 1, first, example)

    def report(self, n: int) -> dict:
        peak = max((b for _, b in self.rss), default=0)
        early = [b for j, b in self.rss if j <= max(1000, n // 10)]
        late = [b for j, b in self.rss if j >= n // 2]
        return {
            "inputs": n,
            "outcomes": {k: self.outcomes[k] for k in OUTCOMES},
            "rejected_by_stage": dict(sorted(self.stages.items())),
            "seconds": round(self.seconds, 1),
            "inputs_per_s": round(n / max(self.seconds, 1e-9), 1),
            "peak_rss_mib": round(peak / MiB, 1),
            "rss_mib_first_tenth_max": round(max(early, default=0) / MiB, 1),
            "rss_mib_second_half_max": round(max(late, default=0) / MiB, 1),
            "rss_growth_mib": round((max(late, default=0) - max(early, default=0)) / MiB, 1),
            "failures": [{"count": c, "first_input": f, "example": e} for c, f, e in sorted(self.failures.values(), key=lambda x: x[1])][:10],
        }


def run_python(seeds: list[Seed], indices: list[int], base_seed: int, deadline: float, progress, verbose=False) -> Tally:
    import numpy as np

    from wgllm.errors import ModelFormatError
    from wgllm.gguf_io import GGUFFile
    from wgllm.model import ModelConfig

    tally = Tally(verbose=verbose)
    signal.signal(signal.SIGPROF, _on_alarm)
    folder = Path(tempfile.mkdtemp(prefix="wgllm-fuzz-"))
    start = time.perf_counter()
    n = len(indices)
    np.seterr(all="ignore")  # random bytes dequantise to NaN and inf: not a finding
    try:
        for done, i in enumerate(indices, 1):
            kinds, s, splices, _, _ = make_input(base_seed, i, seeds)
            path = folder / f"fuzz-input-{i}.gguf"
            path.write_bytes(apply(seeds[s].data if s >= 0 else b"", splices))
            stage, g = "header", None
            signal.setitimer(signal.ITIMER_PROF, deadline)
            try:
                g = GGUFFile(path)
                stage = "data"
                for t in g.tensors.values():  # every tensor's bytes lie inside the file; small ones dequantise
                    if t.raw.nbytes != t.n_bytes or (t.n_bytes and int(t.raw[0]) + int(t.raw[-1]) < 0):
                        raise AssertionError(f"tensor {t.name}: {t.raw.nbytes} bytes mapped, {t.n_bytes} expected")
                    if t.n_elements <= 1 << 14:
                        out = g.dequantize(t.name)
                        assert out.shape == t.shape and out.dtype == np.float32, (out.shape, t.shape)
                stage = "config"
                if "general.architecture" in g.metadata:
                    ModelConfig.from_gguf(g)
                signal.setitimer(signal.ITIMER_PROF, 0)
                tally.add(i, "accepted", "", "", kinds)
            except _Deadline:
                tally.add(i, "timeout", stage, f"{stage}: no answer within {deadline} s of CPU time", kinds)
            except ModelFormatError as e:
                signal.setitimer(signal.ITIMER_PROF, 0)
                clear = str(path) in str(e)
                tally.add(i, "rejected" if clear else "crash", stage, f"{stage}: {'' if clear else 'no file name: '}{e}", kinds)
            except BaseException as e:  # noqa: BLE001 - every other exception is a finding
                signal.setitimer(signal.ITIMER_PROF, 0)
                if isinstance(e, KeyboardInterrupt):
                    raise
                tally.add(i, "crash", stage, f"{stage}: {type(e).__name__}: {str(e)[:240]}", kinds)
            finally:
                if g is not None:
                    g.close()
                path.unlink()
            if done % 100 == 0 or done == n:
                tally.rss.append((done, _rss()))
                progress("python", done, n, tally)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        shutil.rmtree(folder, ignore_errors=True)
    tally.seconds = time.perf_counter() - start
    tally.rss.append((n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
    return tally


def build_node_driver(out_dir: Path) -> Path:
    """esbuild the Node driver (it imports web/src/gguf.ts and model.ts) into out_dir."""
    out = out_dir / "fuzz_gguf_node.mjs"
    subprocess.run([str(ESBUILD), str(NODE_DRIVER), "--bundle", "--platform=node", "--format=esm", "--log-level=warning",
                    f"--outfile={out}"], check=True)
    return out


class NodeDriver:
    def __init__(self, entry: Path, seeds: list[Seed], deadline: float):
        # wall-clock time in Node (a load-slowed machine must not read as a hang): three times the CPU deadline
        env = {**os.environ, "FUZZ_DEADLINE_MS": str(int(3 * deadline * 1000))}
        self.proc = subprocess.Popen(["node", str(entry)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.buffer = b""
        for s, seed in enumerate(seeds):
            self.proc.stdin.write(b"S" + struct.pack("<IQ", s, len(seed.data)) + seed.data)

    def send(self, i: int, s: int, splices: list[Splice], chunk: int, known: bool) -> None:
        frame = [b"I", struct.pack("<IiIBI", i, s, chunk, known, len(splices))]
        for at, delete, insert in splices:
            frame += [struct.pack("<QQI", at, delete, len(insert)), insert]
        self.proc.stdin.write(b"".join(frame))
        self.proc.stdin.flush()

    def answer(self, wait: float) -> dict | None:
        """The next answer line, or None when the driver died or said nothing within `wait` s."""
        end = time.monotonic() + wait
        while b"\n" not in self.buffer:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            piece = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not piece:
                return None
            self.buffer += piece
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_node(seeds: list[Seed], indices: list[int], base_seed: int, deadline: float, entry: Path, rss_limit: int, progress, verbose=False) -> Tally:
    tally = Tally(verbose=verbose)
    driver = NodeDriver(entry, seeds, deadline)
    start = time.perf_counter()
    n = len(indices)
    try:
        for done, i in enumerate(indices, 1):
            kinds, s, splices, chunk, known = make_input(base_seed, i, seeds)
            driver.send(i, s, splices, chunk, known)
            a = driver.answer(3 * deadline + 10)
            if a is None:  # a synchronous hang or a dead process: the driver is restarted
                died = driver.proc.poll()
                tally.add(i, "crash" if died is not None else "timeout", "", f"node driver {'exited with ' + str(died) if died is not None else 'stuck'}", kinds)
                driver.close()
                driver = NodeDriver(entry, seeds, deadline)
                continue
            tally.add(i, a["outcome"], a["stage"], a["message"], kinds)
            if done % 100 == 0 or done == n or a["rss"] > rss_limit:
                tally.rss.append((done, a["rss"]))
                progress("node", done, n, tally, a)
            if a["rss"] > rss_limit:
                tally.add(i, "crash", "", f"node RSS {a['rss'] // MiB} MiB passed the limit of {rss_limit // MiB} MiB: run stopped", kinds)
                break
    finally:
        driver.close()
    tally.seconds = time.perf_counter() - start
    return tally


def _progress(every: int):
    def show(side: str, done: int, n: int, tally: Tally, answer: dict | None = None) -> None:
        if done % every == 0 or done == n:
            mem = tally.rss[-1][1] // MiB if tally.rss else 0
            heap = f" heap {answer['heap'] // MiB} MiB external {answer['external'] // MiB} MiB" if answer else ""
            print(f"fuzz {side}: {done}/{n} {dict(tally.outcomes)} rss {mem} MiB{heap}", file=sys.stderr, flush=True)

    return show


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ps = sub.add_parser("seeds", help="write the seed files into a folder")
    ps.add_argument("folder", type=Path)
    ps.add_argument("--no-tiny", action="store_true", help="leave out the tiny converted models (no torch needed)")
    pr = sub.add_parser("run", help="fuzz the readers")
    pr.add_argument("--seeds", type=Path, required=True)
    pr.add_argument("-n", type=int, default=100_000, help="inputs per reader (default 100000)")
    pr.add_argument("--seed", type=int, default=0, help="input i is derived from (seed, i)")
    pr.add_argument("--only", choices=("python", "node"))
    pr.add_argument("--inputs", help="comma-separated input numbers: run only these and print each outcome")
    pr.add_argument("--deadline", type=float, default=10.0, help="per input: CPU seconds in Python, wall seconds (x3) in Node")
    pr.add_argument("--node-rss-limit", type=int, default=4096, help="MiB; the Node run stops past it")
    pr.add_argument("--node-entry", type=Path, help="an already built driver (else esbuild builds one)")
    pr.add_argument("--json", type=Path, help="write the report here")
    pr.add_argument("--progress", type=int, default=5000, help="print a line every this many inputs")
    args = p.parse_args(argv)
    if args.command == "seeds":
        for path in make_seeds(args.folder, tiny=() if args.no_tiny else TINY):
            print(path, path.stat().st_size)
        return 0
    seeds = load_seeds(args.seeds)
    indices = [int(x) for x in args.inputs.split(",")] if args.inputs else list(range(args.n))
    verbose = bool(args.inputs)
    report = {"command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
              "seeds": {s.name: len(s.data) for s in seeds}, "n": args.n, "seed": args.seed}
    show = _progress(args.progress)
    tallies = {}
    if args.only != "node":
        tallies["python"] = run_python(seeds, indices, args.seed, args.deadline, show, verbose)
        report["python"] = tallies["python"].report(len(indices))
    if args.only != "python":
        with tempfile.TemporaryDirectory(prefix="wgllm-fuzz-node-") as tmp:
            entry = args.node_entry or build_node_driver(Path(tmp))
            tallies["node"] = run_node(seeds, indices, args.seed, args.deadline, entry, args.node_rss_limit * MiB, show, verbose)
        report["node"] = tallies["node"].report(len(tallies["node"].codes))
    if len(tallies) == 2:  # same inputs: where one reader accepts what the other rejects
        a, b = tallies["python"].codes, tallies["node"].codes
        report["py_accepts_node_rejects"] = [indices[k] for k in range(min(len(a), len(b))) if a[k] == 0 and b[k] == 1][:20]
        report["node_accepts_py_rejects"] = [indices[k] for k in range(min(len(a), len(b))) if a[k] == 1 and b[k] == 0][:20]
        report["disagreements"] = sum(1 for x, y in zip(a, b) if {x, y} == {0, 1})
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    bad = sum(report[side]["outcomes"]["crash"] + report[side]["outcomes"]["timeout"] for side in tallies)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
