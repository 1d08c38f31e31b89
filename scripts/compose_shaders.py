"""Compose the weight kernels: shaders/matmul_<type>.wgsl and shaders/embedding_<type>.wgsl.

    python scripts/compose_shaders.py           # write them
    python scripts/compose_shaders.py --check   # exit 1, naming each file, when one is not current

Each op's body is written once (shaders/compose/ops/<op>.wgsl) and each GGUF type's dequantisation
once (shaders/compose/types/<type>.wgsl); a composed file is plain WGSL, checked in, read by both
hosts as before (wgpu-py and the browser bundle), and tests/py/test_shader_compose.py keeps it
current. A new weight type is one types/ file (plus its numpy oracle and the repacking rows in
py/wgllm/gpu/weights.py and web/src/weights.ts).

An op body has these placeholders, each alone where it stands:
  {{type}}, {{desc}}  the type's name and its first line (what a weight is: "Q4_0 (w = d * (q - 8))")
  {{bindings}}        the type's weight bindings (from binding 1 on)
  {{<name>}}          in `@binding({{<name>}})`: the op's own bindings, numbered on after the weights'
  {{dequant}}         the type's functions for this op
A type file: its description line, then sections opened by `//@ <name>` lines:
  //@ bindings   its storage arrays, `@binding(1)` on, in the order the hosts bind the repacked arrays
  //@ shared     functions both ops use
  //@ matmul     what the matmul body calls: unit(row, u) and dot_unit(row, u, xs)
  //@ embedding  what the embedding body calls: weight4(row, i4)
The bindings and shared functions spell a row's length `k`, as the matmul's Params do; the embedding's
Params call it `dim`, and its composition renames the word `k` to `dim` in those two sections.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SHADERS = Path(__file__).resolve().parents[1] / "shaders"
COMPOSE = SHADERS / "compose"
OPS = {"matmul": ("matmul",), "embedding": ("embedding",)}  # op -> the type sections it takes after shared
SECTIONS = ("bindings", "shared", "matmul", "embedding")
GENERATED = "// Composed by scripts/compose_shaders.py from shaders/compose/ops/{op}.wgsl and types/{type}.wgsl: edit those."


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
    return desc, sections


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


def composed() -> dict[Path, str]:
    """Every composed file's path and text."""
    types = sorted(p.stem for p in (COMPOSE / "types").glob("*.wgsl"))
    if not types:
        raise ComposeError(f"no type files in {COMPOSE / 'types'}")
    return {SHADERS / f"{op}_{t}.wgsl": compose(op, t) for op in OPS for t in types}


def stale() -> list[str]:
    """The composed files that differ from their sources, and files that look composed but have none."""
    want = composed()
    out = [f"{p.relative_to(SHADERS.parent)} is not current" for p, text in want.items() if not p.exists() or p.read_text() != text]
    for p in sorted(SHADERS.glob("*.wgsl")):
        if p not in want and "Composed by scripts/compose_shaders.py" in p.read_text():
            out.append(f"{p.relative_to(SHADERS.parent)} says it is composed but has no type file")
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
                tmp = path.with_suffix(".wgsl.tmp")
                tmp.write_text(text)
                tmp.replace(path)
                print(f"wrote {path.relative_to(SHADERS.parent)}")
    except ComposeError as e:
        print(f"compose_shaders: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
