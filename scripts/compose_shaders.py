"""Compose the weight kernels (shaders/matmul_<type>.wgsl, shaders/embedding_<type>.wgsl) and the
table of block layouts both hosts repack by (py/wgllm/gpu/weight_types.py, web/src/weight_types.ts).

    python scripts/compose_shaders.py           # write them
    python scripts/compose_shaders.py --check   # exit 1, naming each file, when one is not current

Each op's body is written once (shaders/compose/ops/<op>.wgsl) and each GGUF type's dequantisation
once (shaders/compose/types/<type>.wgsl); a composed file is plain WGSL, checked in, read by both
hosts as before (wgpu-py and the browser bundle), and tests/py/test_shader_compose.py keeps it
current. A new weight type is one types/ file (plus its numpy oracle, and in the repacking code only
where its fields need more than a byte range each, as Q4_K's scales do).

An op body has these placeholders, each alone where it stands:
  {{type}}, {{desc}}  the type's name and its first line (what a weight is: "Q4_0 (w = d * (q - 8))")
  {{bindings}}        the type's weight bindings (from binding 1 on)
  {{<name>}}          in `@binding({{<name>}})`: the op's own bindings, numbered on after the weights'
  {{dequant}}         the type's functions for this op
A type file: its description line, then sections opened by `//@ <name>` lines:
  //@ layout     one JSON line: {"ggml": type id, "block": elements, "bytes": per block, "fields":
                 [[name, start, end], ...]}: the repacked arrays in binding order, each bytes
                 [start, end) of every block, except the fields the repacking decodes (DECODED):
                 Q4_K's and Q5_K's "sm", their 12 packed scale bytes from `start` decoded to 16, eight
                 6-bit scales then eight mins (ggml's get_scale_min_k4); Q3_K's "sc3", its 12 bytes of
                 sixteen packed 6-bit scales from `start` decoded to 16 signed bytes, each scale - 32
  //@ bindings   its storage arrays, `@binding(1)` on, named as the layout's fields, in their order
  //@ shared     functions both ops use
  //@ matmul     what the matmul body calls: unit(row, u) and dot_unit(row, u, xs)
  //@ embedding  what the embedding body calls: weight4(row, i4)
The bindings and shared functions spell a row's length `k`, as the matmul's Params do; the embedding's
Params call it `dim`, and its composition renames the word `k` to `dim` in those two sections.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

SHADERS = Path(__file__).resolve().parents[1] / "shaders"
COMPOSE = SHADERS / "compose"
OPS = {"matmul": ("matmul",), "embedding": ("embedding",)}  # op -> the type sections it takes after shared
SECTIONS = ("layout", "bindings", "shared", "matmul", "embedding")
ROOT = SHADERS.parent
TABLES = {"py": ROOT / "py" / "wgllm" / "gpu" / "weight_types.py", "ts": ROOT / "web" / "src" / "weight_types.ts"}
GENERATED = "// Composed by scripts/compose_shaders.py from shaders/compose/ops/{op}.wgsl and types/{type}.wgsl: edit those."


# Fields decoded at repack time (py/wgllm/gpu/weights.py, web/src/weights.ts): name -> (packed bytes
# read from `start`, decoded bytes = end - start).
DECODED = {"sm": (12, 16), "sc3": (12, 16)}


class ComposeError(ValueError):
    pass


def read_type(path: Path) -> tuple[str, dict[str, list[str]]]:
    """(description, {section: lines}) of a type file; every section present, in order."""
    lines = path.read_text().rstrip("\n").split("\n")
    if not lines or not lines[0].startswith("// ") or lines[0].startswith("//@"):
        raise ComposeError(f"{path}: the first line must be `// <what a weight is>`, got {lines[0]!r}")
    desc, sections, current = lines[0][3:], {}, None
    for i, line in enumerate(lines[1:], 2):
        if line.startswith("//@"):
            current = line[3:].strip()
            if current not in SECTIONS or current in sections:
                raise ComposeError(f"{path}:{i}: section {current!r} is unknown or repeated (expected {', '.join(SECTIONS)} once each)")
            sections[current] = []
        elif current is None:
            raise ComposeError(f"{path}:{i}: text before the first `//@ <section>` line")
        else:
            sections[current].append(line)
    if list(sections) != list(SECTIONS):
        raise ComposeError(f"{path}: sections {list(sections)}, expected {list(SECTIONS)} in that order")
    numbers = [int(m) for line in sections["bindings"] for m in re.findall(r"@binding\((\d+)\)", line)]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ComposeError(f"{path}: the weight bindings must be numbered 1, 2, ... in order, got {numbers}")
    layout = read_layout(path, sections["layout"])
    names = [m for line in sections["bindings"] for m in re.findall(r"@binding\(\d+\) var<[^>]*> (\w+):", line)]
    if names != [f[0] for f in layout["fields"]]:
        raise ComposeError(f"{path}: the bindings {names} are not the layout's fields {[f[0] for f in layout['fields']]} in order")
    return desc, sections


def read_layout(path: Path, lines: list[str]) -> dict:
    text = "\n".join(line for line in lines if line.strip())
    expected = '{"ggml": id, "block": elements, "bytes": per block, "fields": [[name, start, end], ...]}'
    try:
        layout = json.loads(text)
    except ValueError as e:
        raise ComposeError(f"{path}: the layout section is not JSON ({e}); expected {expected}") from None
    ok = isinstance(layout, dict) and set(layout) == {"ggml", "block", "bytes", "fields"}
    ok = ok and all(isinstance(layout[k], int) and layout[k] >= 0 for k in ("ggml", "block", "bytes")) and isinstance(layout["fields"], list)
    ok = ok and all(isinstance(f, list) and len(f) == 3 and isinstance(f[0], str) and all(isinstance(v, int) for v in f[1:]) for f in layout["fields"])
    if not ok or not layout["fields"]:
        raise ComposeError(f"{path}: the layout must be {expected}, got {text}")
    for name, start, end in layout["fields"]:
        if name in DECODED:
            packed, decoded = DECODED[name]
            if start < 0 or start + packed > layout["bytes"] or end - start != decoded:
                raise ComposeError(f"{path}: decoded field {name!r} reads {packed} bytes from {start} of a {layout['bytes']}-byte block and holds {decoded}: expected [{start}, {start + decoded}), got [{start}, {end})")
        elif not 0 <= start < end or end > layout["bytes"]:
            raise ComposeError(f"{path}: layout field {name!r} covers bytes [{start}, {end}), outside a {layout['bytes']}-byte block")
    return layout


def compose(op: str, type_name: str) -> str:
    body = (COMPOSE / "ops" / f"{op}.wgsl").read_text()
    desc, sections = read_type(COMPOSE / "types" / f"{type_name}.wgsl")
    rename = (lambda s: re.sub(r"\bk\b", "dim", s)) if op == "embedding" else (lambda s: s)
    weights = [rename(line) for line in sections["bindings"]]
    dequant = [rename(line) for line in sections["shared"]] + [line for s in OPS[op] for line in sections[s]]
    out = body.replace("{{type}}", type_name).replace("{{desc}}", desc)
    out = out.replace("{{bindings}}", "\n".join(weights)).replace("{{dequant}}", "\n".join(dequant))
    names = re.findall(r"@binding\(\{\{(\w+)\}\}\)", out)
    for i, name in enumerate(names):
        out = out.replace(f"{{{{{name}}}}}", str(len(weights) + 1 + i), 1)
    left = re.findall(r"\{\{\w*\}\}", out)
    if left:
        raise ComposeError(f"shaders/compose/ops/{op}.wgsl: placeholders left unfilled for {type_name}: {', '.join(sorted(set(left)))}")
    first, rest = out.split("\n", 1)
    return f"{first}\n{GENERATED.format(op=op, type=type_name)}\n{rest}"


def tables(types: list[str]) -> dict[Path, str]:
    """The layout table in Python and in TypeScript: ggml type id -> (name, block, bytes, fields)."""
    rows = []
    for t in types:
        path = COMPOSE / "types" / f"{t}.wgsl"
        layout = read_layout(path, read_type(path)[1]["layout"])
        rows.append((layout["ggml"], t.upper(), layout["block"], layout["bytes"], [tuple(f) for f in layout["fields"]]))
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        raise ComposeError(f"shaders/compose/types: two types share a ggml id ({ids})")
    note = "Composed by scripts/compose_shaders.py from the layout sections of shaders/compose/types/*.wgsl: edit those."
    doc = "ggml type id -> (name, elements a block, bytes a block, fields): the repacked arrays in binding order, each bytes [start, end) of every block (sm, sc3: packed scales decoded, weights.py)"
    py = [f'"""{note}"""', "", f"# {doc}", "WEIGHT_TYPES: dict[int, tuple[str, int, int, tuple[tuple[str, int, int], ...]]] = {"]
    ts = [f"// {note}", "", f"/** {doc}. */", "export const WEIGHT_TYPES: Readonly<Record<number, WeightTypeRow>> = {"]
    for gid, name, block, size, fields in sorted(rows):
        py_fields = "".join(f"({n!r}, {a}, {b}), " for n, a, b in fields).rstrip(" ")
        ts_fields = ", ".join('{ name: "%s", start: %d, end: %d }' % f for f in fields)
        py.append(f"    {gid}: ({name!r}, {block}, {size}, ({py_fields})),")
        ts.append(f'  {gid}: {{ name: "{name}", block: {block}, size: {size}, fields: [{ts_fields}] }},')
    py.append("}")
    ts = ts[:2] + ["export interface WeightTypeRow {", "  readonly name: string;", "  readonly block: number;", "  readonly size: number;",
                   "  readonly fields: readonly { readonly name: string; readonly start: number; readonly end: number }[];", "}", ""] + ts[2:] + ["};"]
    return {TABLES["py"]: "\n".join(py) + "\n", TABLES["ts"]: "\n".join(ts) + "\n"}


def composed() -> dict[Path, str]:
    """Every composed file's path and text."""
    types = sorted(p.stem for p in (COMPOSE / "types").glob("*.wgsl"))
    if not types:
        raise ComposeError(f"no type files in {COMPOSE / 'types'}")
    out = {SHADERS / f"{op}_{t}.wgsl": compose(op, t) for op in OPS for t in types}
    if TABLES["py"].parent.is_dir() and TABLES["ts"].parent.is_dir():  # a checkout (tests copy shaders/ alone)
        out.update(tables(types))
    return out


def stale() -> list[str]:
    """The composed files that differ from their sources, and files that look composed but have none."""
    want = composed()
    out = [f"{p.relative_to(ROOT)} is not current" for p, text in want.items() if not p.exists() or p.read_text() != text]
    for p in sorted(SHADERS.glob("*.wgsl")):
        if p not in want and "Composed by scripts/compose_shaders.py" in p.read_text():
            out.append(f"{p.relative_to(ROOT)} says it is composed but has no type file")
    return out


def main(argv: list[str]) -> int:
    try:
        if "--check" in argv:
            problems = stale()
            for line in problems:
                print(f"compose_shaders: {line}: run python scripts/compose_shaders.py", file=sys.stderr)
            return 1 if problems else 0
        for path, text in composed().items():
            if not path.exists() or path.read_text() != text:
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(text)
                tmp.replace(path)
                print(f"wrote {path.relative_to(ROOT)}")
    except ComposeError as e:
        print(f"compose_shaders: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
