"""The weight kernels and the block-layout table both hosts repack by are composed
(scripts/compose_shaders.py): the checked-in files are current, and the composer refuses malformed
sources by name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "scripts" / "compose_shaders.py"), *args], capture_output=True, text=True)


def copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "compose_shaders.py", root / "scripts")
    shutil.copytree(REPO / "shaders", root / "shaders")
    for table in ("py/wgllm/gpu/weight_types.py", "web/src/weight_types.ts"):
        (root / table).parent.mkdir(parents=True)
        shutil.copy2(REPO / table, root / table)
    return root


def test_checked_in_files_are_current():
    result = run(REPO, "--check")
    assert result.returncode == 0, result.stderr


def test_every_weight_kernel_is_composed():
    types = {p.stem for p in (REPO / "shaders" / "compose" / "types").glob("*.wgsl")}
    for op in ("matmul", "embedding"):
        on_disk = {p.stem.removeprefix(f"{op}_") for p in (REPO / "shaders").glob(f"{op}_*.wgsl")}
        assert on_disk == types, f"{op}: hand-written files {on_disk - types}, types without a file {types - on_disk}"
    assert {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs"} <= types


def test_an_edited_source_makes_the_check_fail_until_composed(tmp_path):
    root = copy_tree(tmp_path)
    unit = root / "shaders" / "compose" / "types" / "q4_0.wgsl"
    unit.write_text(unit.read_text().replace("// The low (shift 0)", "// The lower (shift 0)"))
    stale = run(root, "--check")
    assert stale.returncode == 1
    assert "shaders/matmul_q4_0.wgsl is not current" in stale.stderr
    assert "shaders/embedding_q4_0.wgsl is not current" in stale.stderr
    assert "q8_0" not in stale.stderr
    assert run(root).returncode == 0
    assert run(root, "--check").returncode == 0
    assert "// The lower (shift 0)" in (root / "shaders" / "matmul_q4_0.wgsl").read_text()


def test_a_new_type_is_one_file(tmp_path):
    root = copy_tree(tmp_path)
    types = root / "shaders" / "compose" / "types"
    text = (types / "q4_0.wgsl").read_text().replace("// Q4_0 (w = d * (q - 8))", "// Q4_X (a test type)")
    (types / "q4_x.wgsl").write_text(text)
    clash = run(root)  # Q4_0's ggml id
    assert clash.returncode == 2 and "two types share a ggml id" in clash.stderr
    (types / "q4_x.wgsl").write_text(text.replace('"ggml": 2,', '"ggml": 99,'))
    assert run(root).returncode == 0
    # the layout table both hosts repack by has its row
    assert "    99: ('Q4_X', 32, 18, (('qs', 2, 18), ('d', 0, 2),))," in (root / "py/wgllm/gpu/weight_types.py").read_text()
    assert '  99: { name: "Q4_X", block: 32, size: 18, fields: [{ name: "qs", start: 2, end: 18 }, { name: "d", start: 0, end: 2 }] },' in (
        root / "web/src/weight_types.ts"
    ).read_text()
    matmul = (root / "shaders" / "matmul_q4_x.wgsl").read_text()
    embedding = (root / "shaders" / "embedding_q4_x.wgsl").read_text()
    assert matmul.startswith("// matmul_q4_x: ") and "W Q4_X (a test type)   ref:" in matmul.split("\n")[0]
    assert embedding.startswith("// embedding_q4_x: ") and "table Q4_X (a test type)   ref:" in embedding.split("\n")[0]
    # the op's own bindings are numbered after the type's (two weight arrays: x is 3, y 6; ids 3, y 4)
    assert "@binding(3) var<storage, read> x:" in matmul and "@binding(6) var<storage, read_write> y:" in matmul
    assert "@binding(3) var<storage, read> ids:" in embedding and "@binding(4) var<storage, read_write> y:" in embedding
    assert "params.dim / 32u" in embedding and "params.k" not in embedding and "{{" not in matmul + embedding
    (root / "shaders" / "matmul_q4_x.wgsl").unlink()
    (types / "q4_x.wgsl").unlink()
    orphan = run(root, "--check")
    assert orphan.returncode == 1 and "shaders/embedding_q4_x.wgsl says it is composed but has no type file" in orphan.stderr


def test_malformed_type_files_are_refused_by_name(tmp_path):
    root = copy_tree(tmp_path)
    unit = root / "shaders" / "compose" / "types" / "q8_0.wgsl"
    good = unit.read_text()
    cases = {
        good.replace("//@ embedding\n", ""): "sections ['layout', 'bindings', 'shared', 'matmul'], expected ['layout', 'bindings', 'shared', 'matmul', 'embedding']",
        good.replace("//@ shared", "//@ helpers"): "section 'helpers' is unknown or repeated",
        good.replace("@binding(2)", "@binding(5)"): "the weight bindings must be numbered 1, 2, ... in order, got [1, 5]",
        "//@ bindings\n" + good: "the first line must be `// <what a weight is>`",
        good.replace('[["qs", 2, 34], ["d", 0, 2]]', '[["d", 0, 2], ["qs", 2, 34]]'): "the bindings ['qs', 'd'] are not the layout's fields ['d', 'qs'] in order",
        good.replace('["d", 0, 2]', '["d", 0, 40]'): "layout field 'd' covers bytes [0, 40), outside a 34-byte block",
        good.replace('"bytes": 34', '"bytes": "34"'): "the layout must be {",
        good.replace('"bytes": 34,', '"bytes": 34'): "the layout section is not JSON",
    }
    for text, message in cases.items():
        unit.write_text(text)
        result = run(root)
        assert result.returncode == 2, result
        assert "shaders/compose/types/q8_0.wgsl" in result.stderr and message in result.stderr, (message, result.stderr)
    unit.write_text(good)
    q3_k = root / "shaders" / "compose" / "types" / "q3_k.wgsl"  # a decoded field: 12 bytes read, 16 held
    good_q3_k = q3_k.read_text()
    for field, message in (('["sc3", 96, 108]', "decoded field 'sc3' reads 12 bytes from 96 of a 110-byte block and holds 16: expected [96, 112), got [96, 108)"),
                           ('["sc3", 100, 116]', "decoded field 'sc3' reads 12 bytes from 100 of a 110-byte block")):
        q3_k.write_text(good_q3_k.replace('["sc3", 96, 112]', field))
        result = run(root)
        assert result.returncode == 2 and "shaders/compose/types/q3_k.wgsl" in result.stderr and message in result.stderr, result.stderr
    q3_k.write_text(good_q3_k)
    body = root / "shaders" / "compose" / "ops" / "matmul.wgsl"
    body.write_text(body.read_text().replace("{{dequant}}", "{{dequant}}\n// {{oops}}"))
    result = run(root)
    assert result.returncode == 2 and "shaders/compose/ops/matmul.wgsl: placeholders left unfilled for bf16: {{oops}}" in result.stderr
