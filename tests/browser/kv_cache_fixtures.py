"""Fixtures for tests/browser/kv_cache.spec.ts: what the Python loader makes of every shader's f16 KV
variant (wgllm.gpu.runtime.kv_f16_variant), for the bundle's kvF16Variant to be compared with.

    python tests/browser/kv_cache_fixtures.py OUT_DIR

Writes OUT_DIR/kv_f16_variants.json: for each shaders/*.wgsl (and for one made-up text with the alias
twice) either {"variant": text} or {"error": message}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "py"))

from wgllm.gpu.runtime import KV_ALIAS, GpuError, kv_f16_variant  # noqa: E402

# A shader text the variant must refuse although it has the alias: twice is ambiguous.
TWICE = {"name": "twice", "source": f"{KV_ALIAS}\n{KV_ALIAS}\n@compute @workgroup_size(1) fn main() {{}}\n"}


def variant_or_error(name: str, source: str) -> dict:
    try:
        return {"variant": kv_f16_variant(name, source)}
    except GpuError as e:
        return {"error": str(e)}


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    shaders = {f.stem: variant_or_error(f.name, f.read_text()) for f in sorted((REPO / "shaders").glob("*.wgsl"))}
    twice = {**TWICE, **variant_or_error(TWICE["name"] + ".wgsl", TWICE["source"])}
    (out_dir / "kv_f16_variants.json").write_text(json.dumps({"alias": KV_ALIAS, "shaders": shaders, "twice": twice}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
