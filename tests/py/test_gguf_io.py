"""wgllm.gguf_io.GGUFFile against files written by gguf.GGUFWriter and read by gguf.GGUFReader
(llama.cpp's own Python package), on good input, bad input, and fuzzed input."""

from __future__ import annotations

import itertools
import os
import signal
import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, quants
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wgllm.errors import ModelFormatError
from wgllm.gguf_io import GGUFFile, atomic_output

T = GGMLQuantizationType
V = GGUFValueType


def write_gguf(path: Path, kvs=(), tensors=(), alignment: int | None = None, arch: str = "llama") -> Path:
    """kvs: (key, value, vtype, sub_type); tensors: (name, array, raw_dtype or None)."""
    w = GGUFWriter(path, arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value, vtype, sub_type in kvs:
        w.add_key_value(key, value, vtype, sub_type)
    for name, array, raw_dtype in tensors:
        w.add_tensor(name, array, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def small_gguf(path: Path) -> Path:
    """A valid file with strings, numeric and string arrays, and two tensors (F32, Q8_0)."""
    rng = np.random.default_rng(0)
    q8 = quants.quantize(rng.standard_normal((3, 64)).astype(np.float32), T.Q8_0)
    return write_gguf(
        path,
        kvs=[
            ("llama.block_count", 2, V.UINT32, None),
            ("general.name", "tiny", V.STRING, None),
            ("tokenizer.ggml.tokens", ["a", "bc", "\u00e9"], V.ARRAY, V.STRING),
            ("tokenizer.ggml.scores", [0.5, -1.0, 2.0], V.ARRAY, V.FLOAT32),
        ],
        tensors=[("a.weight", rng.standard_normal((2, 5)).astype(np.float32), None), ("b.weight", q8, T.Q8_0)],
    )


def assert_format_error(path: Path, *fragments: str) -> ModelFormatError:
    with pytest.raises(ModelFormatError) as e:
        GGUFFile(path)
    message = str(e.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return e.value


# -- good files ------------------------------------------------------------------------------------

SCALARS = [
    ("t.u8", 255, V.UINT8),
    ("t.i8", -128, V.INT8),
    ("t.u16", 65535, V.UINT16),
    ("t.i16", -32768, V.INT16),
    ("t.u32", 2**32 - 1, V.UINT32),
    ("t.i32", -(2**31), V.INT32),
    ("t.u64", 2**64 - 1, V.UINT64),
    ("t.i64", -(2**63), V.INT64),
    ("t.f32", -1.5e-3, V.FLOAT32),
    ("t.f64", 1.0 / 3.0, V.FLOAT64),
    ("t.true", True, V.BOOL),
    ("t.false", False, V.BOOL),
    ("t.str", "h\u00e9llo \u2581 \U0001f600", V.STRING),
    ("t.empty_str", "", V.STRING),
]
ARRAYS = [
    ("a.u8", [0, 1, 255], V.UINT8, np.uint8),
    ("a.i8", [-128, 0, 127], V.INT8, np.int8),
    ("a.u16", [0, 65535], V.UINT16, np.uint16),
    ("a.i16", [-32768, 32767], V.INT16, np.int16),
    ("a.u32", [0, 2**32 - 1, 7], V.UINT32, np.uint32),
    ("a.i32", [-(2**31), 2**31 - 1], V.INT32, np.int32),
    ("a.u64", [0, 2**64 - 1], V.UINT64, np.uint64),
    ("a.i64", [-(2**63), 2**63 - 1], V.INT64, np.int64),
    ("a.f32", [0.1, -2.5, 3.0e38], V.FLOAT32, np.float32),
    ("a.f64", [0.1, -2.5, 1e300], V.FLOAT64, np.float64),
    ("a.bool", [True, False, True], V.BOOL, np.bool_),
]


def test_metadata_of_every_type_round_trips(tmp_path):
    kvs = [(k, v, t, None) for k, v, t in SCALARS]
    kvs += [(k, v, V.ARRAY, t) for k, v, t, _ in ARRAYS]
    kvs.append(("a.str", ["", "x", "\u00e9\u00e9", "<|im_end|>"], V.ARRAY, V.STRING))
    g = GGUFFile(write_gguf(tmp_path / "kv.gguf", kvs))
    assert g.architecture == "llama"
    for key, value, vtype in SCALARS:
        got = g.metadata[key]
        if vtype == V.FLOAT32:
            assert got == float(np.float32(value)), key
        else:
            assert got == value and type(got) is type(value), (key, got)
    for key, value, _, dtype in ARRAYS:
        got = g.metadata[key]
        assert isinstance(got, np.ndarray) and got.dtype == dtype, (key, got)
        np.testing.assert_array_equal(got, np.array(value, dtype=dtype))
    assert g.metadata["a.str"] == ["", "x", "\u00e9\u00e9", "<|im_end|>"]
    assert g.require("t.u32", int) == 2**32 - 1
    with pytest.raises(ModelFormatError, match="t.str"):
        g.require("t.str", int)
    with pytest.raises(ModelFormatError, match="missing metadata key no.such"):
        g.require("no.such")


def _tensor_cases(rng):
    x = lambda *s: (rng.standard_normal(s) * 3 + 0.5).astype(np.float32)  # noqa: E731
    cases = [
        ("f32.1d", x(7), None, T.F32),
        ("f32.2d", x(3, 5), None, T.F32),
        ("f32.3d", x(2, 3, 4), None, T.F32),
        ("f32.4d", x(2, 1, 3, 2), None, T.F32),
        ("f16", x(4, 3).astype(np.float16), None, T.F16),
    ]
    # the reader does not look inside blocks: random bytes of a type's row size stand in for weights
    for ggml_type in (T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q4_K, T.Q6_K, T.Q5_1, T.IQ4_NL, T.Q5_K, T.IQ4_XS, T.Q3_K, T.Q2_K):
        block, type_size = GGML_QUANT_SIZES[ggml_type]
        raw = rng.integers(0, 256, (3, 2 * type_size), dtype=np.uint8)  # 3 rows of 2 blocks
        cases.append((ggml_type.name, raw, ggml_type, ggml_type))
    return cases


@pytest.mark.parametrize("alignment", [None, 1, 8, 64, 256])
def test_tensors_shapes_types_and_bytes(tmp_path, alignment):
    cases = _tensor_cases(np.random.default_rng(1))
    path = write_gguf(tmp_path / "t.gguf", tensors=[(name, a, raw) for name, a, raw, _ in cases], alignment=alignment)
    g = GGUFFile(path)
    theirs = {t.name: t for t in GGUFReader(path).tensors}
    assert list(g.tensors) == [c[0] for c in cases]  # file order is kept
    for name, array, raw_dtype, ggml_type in cases:
        t = g.tensors[name]
        block, type_size = GGML_QUANT_SIZES[ggml_type]
        shape = array.shape if raw_dtype is None else quants.quant_shape_from_byte_shape(array.shape, raw_dtype)
        assert t.ggml_type == ggml_type, name
        assert t.shape == tuple(shape), name
        assert t.n_elements == int(np.prod(shape))
        assert t.n_bytes == t.n_elements // block * type_size == array.nbytes, name
        assert t.offset % (alignment or 32) == 0, (name, t.offset)
        assert t.offset == theirs[name].data_offset, name
        assert tuple(reversed(theirs[name].shape.tolist())) == t.shape, name
        assert t.raw.tobytes() == array.tobytes(), name
    # the plain float types come back as written
    np.testing.assert_array_equal(g.dequantize("f32.3d"), cases[2][1])
    np.testing.assert_array_equal(g.dequantize("f16"), cases[4][1].astype(np.float32))
    assert g.tensor("f32.2d", (3, 5)).shape == (3, 5)
    with pytest.raises(ModelFormatError, match=r"tensor f32.2d has shape \(3, 5\), expected \(5, 3\)"):
        g.tensor("f32.2d", (5, 3))
    with pytest.raises(ModelFormatError, match="missing tensor nope"):
        g.tensor("nope")


def test_real_model_matches_gguf_reader(smollm2_path):
    ours, theirs = GGUFFile(smollm2_path), GGUFReader(smollm2_path)
    fields = {k: f for k, f in theirs.fields.items() if not k.startswith("GGUF.")}
    assert set(ours.metadata) == set(fields)
    for key, field in fields.items():
        want = field.contents()
        got = ours.metadata[key]
        if isinstance(got, np.ndarray):
            np.testing.assert_array_equal(got, np.array(want), err_msg=key)
        else:
            assert got == want, key
    assert [t.name for t in theirs.tensors] == list(ours.tensors)
    for t in theirs.tensors:
        mine = ours.tensors[t.name]
        assert mine.ggml_type == t.tensor_type and mine.offset == t.data_offset and mine.n_bytes == t.n_bytes
        assert mine.shape == tuple(reversed(t.shape.tolist()))
    last = theirs.tensors[-1]
    assert ours.tensors[last.name].raw.tobytes() == last.data.tobytes()


def test_atomic_output_leaves_no_half_file(tmp_path):
    target = tmp_path / "out.gguf"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


# -- bad files -------------------------------------------------------------------------------------


def _field_offsets(path: Path) -> dict[str, list[tuple[int, np.dtype]]]:
    """Byte offset and type of every part of every header field, as gguf.GGUFReader parses them."""
    r = GGUFReader(path)
    base = r.data.__array_interface__["data"][0]
    out = {}
    fields = list(r.fields.values()) + [t.field for t in r.tensors]
    for f in fields:
        out[f.name] = [(p.__array_interface__["data"][0] - base, p.dtype) for p in f.parts]
    return out


def _patched(src: Path, dst: Path, offset: int, data: bytes) -> Path:
    buf = bytearray(src.read_bytes())
    buf[offset : offset + len(data)] = data
    dst.write_bytes(bytes(buf))
    return dst


@pytest.fixture
def good(tmp_path) -> Path:
    return small_gguf(tmp_path / "good.gguf")


def test_truncated_anywhere(good, tmp_path):
    data = good.read_bytes()
    g = GGUFFile(good)
    end_of_data = max(t.offset + t.n_bytes for t in g.tensors.values())
    cut = tmp_path / "cut.gguf"
    for n in itertools.chain(range(0, end_of_data, 1), [end_of_data - 1]):
        cut.write_bytes(data[:n])
        assert_format_error(cut)
    cut.write_bytes(data[:end_of_data])  # the padding after the last tensor is not needed
    assert set(GGUFFile(cut).tensors) == {"a.weight", "b.weight"}


def test_empty_missing_and_folder(tmp_path):
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    assert_format_error(empty)
    assert_format_error(tmp_path / "missing.gguf", "no such model file")
    assert_format_error(tmp_path, "no such model file")


def test_wrong_magic(good, tmp_path):
    assert_format_error(_patched(good, tmp_path / "m.gguf", 0, b"GGML"), "not a GGUF file", "magic")
    text = tmp_path / "notes.txt"
    text.write_text("just some text, long enough to hold a header\n" * 3)
    assert_format_error(text, "not a GGUF file")


@pytest.mark.parametrize("version", [0, 1, 4, 2**32 - 1])
def test_unknown_version(good, tmp_path, version):
    assert_format_error(_patched(good, tmp_path / "v.gguf", 4, struct.pack("<I", version)), f"version {version}")


def test_big_endian_is_named(good, tmp_path):
    assert_format_error(_patched(good, tmp_path / "be.gguf", 4, struct.pack(">I", 3)), "big-endian")


def test_unknown_and_unsupported_tensor_types(good, tmp_path):
    type_at = _field_offsets(good)["b.weight"][-2][0]  # parts: name len, name, n_dims, dims, type, offset
    assert good.read_bytes()[type_at : type_at + 4] == struct.pack("<I", T.Q8_0)
    assert_format_error(_patched(good, tmp_path / "u.gguf", type_at, struct.pack("<I", 99)), "tensor b.weight", "unknown tensor type 99")
    i8 = write_gguf(tmp_path / "i8.gguf", tensors=[("x.weight", np.arange(8, dtype=np.int8), None)])
    assert_format_error(i8, "tensor x.weight", "I8", "Q4_K")


def test_tensor_data_past_the_end(good, tmp_path):
    offset_at = _field_offsets(good)["b.weight"][-1][0]
    size = good.stat().st_size
    for forged in (-(-size // 32) * 32, 2**40, 2**64 - 32):
        assert_format_error(_patched(good, tmp_path / "o.gguf", offset_at, struct.pack("<Q", forged)), "tensor b.weight", "truncated")


def test_tensor_offsets_aligned_and_disjoint(good, tmp_path):
    """As the browser's one-pass reader requires: offsets on general.alignment, no tensor inside another."""
    offset_at = _field_offsets(good)["b.weight"][-1][0]
    for forged in (1, 2**64 - 1):
        patched = _patched(good, tmp_path / "m.gguf", offset_at, struct.pack("<Q", forged))
        assert_format_error(patched, "tensor b.weight", f"data offset {forged}, not a multiple of general.alignment 32")
    patched = _patched(good, tmp_path / "v.gguf", offset_at, struct.pack("<Q", 0))  # a.weight is at 0 too
    assert_format_error(patched, "starts at byte", "inside tensor")


def test_bad_shapes(good, tmp_path):
    parts = _field_offsets(good)["b.weight"]
    n_dims_at, dim0_at = parts[2][0], parts[3][0]
    assert_format_error(_patched(good, tmp_path / "d.gguf", n_dims_at, struct.pack("<I", 5)), "b.weight", "5 dimensions")
    assert_format_error(_patched(good, tmp_path / "z.gguf", dim0_at, struct.pack("<Q", 0)), "b.weight", "positive dimensions")
    assert_format_error(_patched(good, tmp_path / "b.gguf", dim0_at, struct.pack("<Q", 48)), "b.weight", "not a multiple of the Q8_0 block of 32")


def test_duplicated_tensor_name(good, tmp_path):
    name_at = _field_offsets(good)["b.weight"][1][0]
    assert_format_error(_patched(good, tmp_path / "dup.gguf", name_at, b"a.weight"), "tensor a.weight appears twice")


def test_duplicated_metadata_key(good, tmp_path):
    scores_at = _field_offsets(good)["tokenizer.ggml.scores"][1][0]  # renamed to ...tokens, same length
    assert_format_error(_patched(good, tmp_path / "k.gguf", scores_at, b"tokenizer.ggml.tokens"), "tokenizer.ggml.tokens appears twice")


def test_bad_alignment_and_nested_arrays(tmp_path):
    for bad in (0, 48):
        path = write_gguf(tmp_path / f"al{bad}.gguf", kvs=[("general.alignment", bad, V.UINT32, None)])
        assert_format_error(path, f"general.alignment = {bad}", "power of two")
    nested = write_gguf(tmp_path / "n.gguf", kvs=[("x.nested", [[1, 2], [3]], V.ARRAY, V.ARRAY)])
    assert_format_error(nested, "x.nested", "unsupported element type")


def test_invalid_utf8_key(good, tmp_path):
    name_at = _field_offsets(good)["general.name"][1][0]
    assert_format_error(_patched(good, tmp_path / "x.gguf", name_at, b"\xff\xfe"), "not UTF-8")


# -- fuzz -----------------------------------------------------------------------------------------


class _Hang(Exception):
    pass


@contextmanager
def _time_limit(seconds: float):
    """Turn a hang into a test failure instead of a stuck test run."""

    def on_alarm(signum, frame):
        raise _Hang(f"GGUFFile took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


_counter = itertools.count()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _open_fuzzed(folder: Path, data: bytes) -> None:
    """Open `data` as a GGUF file: it either parses, or raises ModelFormatError naming the file."""
    path = folder / f"f{next(_counter)}.gguf"
    path.write_bytes(data)
    try:
        with _time_limit(5.0):
            g = GGUFFile(path)
        for t in g.tensors.values():  # a file that parses has every tensor inside it
            assert t.offset + t.n_bytes <= len(data) and t.raw.nbytes == t.n_bytes
    except ModelFormatError as e:
        assert str(path) in str(e), str(e)
    finally:
        os.unlink(path)


with tempfile.TemporaryDirectory() as _tmp:
    _GOOD = small_gguf(Path(_tmp) / "good.gguf").read_bytes()
    _GOOD_FIELDS = _field_offsets(Path(_tmp) / "good.gguf")
# where the header's u64 fields (lengths, counts, dimensions, offsets) and u32 fields (types) lie
_LENGTHS = sorted({off for parts in _GOOD_FIELDS.values() for off, dt in parts if dt == np.uint64})
_U32S = sorted({off for parts in _GOOD_FIELDS.values() for off, dt in parts if dt == np.uint32})
_FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(fuzz_dir, data):
    _open_fuzzed(fuzz_dir, data)


@_FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_after_a_valid_preamble(fuzz_dir, data):
    _open_fuzzed(fuzz_dir, b"GGUF" + struct.pack("<I", 3) + data)


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(_GOOD) - 1), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, len(_GOOD) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(_GOOD)), st.binary(min_size=1, max_size=16)),
    st.tuples(
        st.just("length"),
        st.sampled_from(_LENGTHS),
        st.sampled_from([2**60, 2**63, 2**64 - 1, 2**32, 2**31 - 1, len(_GOOD), len(_GOOD) // 8, 1]),
    ),
    st.tuples(st.just("u32"), st.sampled_from(_U32S), st.sampled_from([0, 1, 5, 9, 12, 13, 255, 2**31, 2**32 - 1])),
)


def _mutate(data: bytearray, mutation) -> bytearray:
    kind, pos, arg = mutation
    if kind == "flip":
        data[pos] ^= arg
    elif kind == "truncate":
        del data[pos:]
    elif kind == "insert":
        data[pos:pos] = arg
    elif kind == "length":
        data[pos : pos + 8] = struct.pack("<Q", arg)
    else:
        data[pos : pos + 4] = struct.pack("<I", arg)
    return data


@_FUZZ
@given(st.lists(_mutation, min_size=1, max_size=4))
def test_fuzz_mutated_valid_file(fuzz_dir, mutations):
    data = bytearray(_GOOD)
    for m in mutations:
        kind, pos, _ = m
        if pos + {"flip": 1, "length": 8, "u32": 4}.get(kind, 0) <= len(data):  # a truncation may come first
            data = _mutate(data, m)
    _open_fuzzed(fuzz_dir, bytes(data))


def test_forged_huge_array_length_fails_fast(tmp_path):
    """2^60 string or float entries: refused from the length alone, without reading or allocating."""
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores"):
        count_at = _GOOD_FIELDS[key][4][0]  # parts: key len, key, value type, element type, count, ...
        data = _mutate(bytearray(_GOOD), ("length", count_at, 2**60))
        path = tmp_path / "huge.gguf"
        path.write_bytes(bytes(data))
        with _time_limit(1.0):
            assert_format_error(path, key)
