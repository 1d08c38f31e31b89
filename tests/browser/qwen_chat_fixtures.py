"""Fixtures for tests/browser/qwen_chat.spec.ts: Qwen's chat templates and what Python makes of them.

    python tests/browser/qwen_chat_fixtures.py OUT_DIR

Writes expected.json: Qwen2.5's template (as the real Qwen2.5-Coder GGUF stores it) and Qwen3's,
every case of tests/py/qwen_chat.py with transformers' rendering of it; and a tiny Qwen3 GGUF
converted with Qwen3's template in its tokenizer_config.json (qwen3-chat.gguf), with a conversation,
the prompt Python's chat helper renders from the file's own template and the greedy answer of
Python's LlmInference (WebGPU on lavapipe, f32 KV cache like the browser's SwiftShader) to it.
Work already done (same script, templates, shaders and Python sources) is skipped.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "py"))

CHAT_OPTIONS = {"max_tokens": 96, "top_k": 1}
CONVERSATION = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello there"}]


def _stamp() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    for f in sorted([*(REPO / "shaders").glob("*.wgsl"), *(REPO / "py" / "wgllm").rglob("*.py"), REPO / "tests/py/qwen_chat.py", REPO / "tests/py/tiny_models.py"]):
        h.update(f.read_bytes())
    h.update((REPO / "tests/data/qwen/qwen3_chat_template.jinja").read_bytes())
    h.update((REPO / "tests/data/phi3/phi3.5_chat_template.jinja").read_bytes())
    h.update((REPO / "tests/data/smollm3/smollm3_chat_template.jinja").read_bytes())
    h.update(datetime.date.today().isoformat().encode())  # SmolLM3's template prints today's date (strftime_now)
    return h.hexdigest()[:16]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    expected_path = out / "expected.json"
    stamp = _stamp()
    if expected_path.is_file() and json.loads(expected_path.read_text()).get("stamp") == stamp:
        return
    import assets
    from qwen_chat import QWEN3_TEMPLATE, cases, transformers_render
    from tiny_models import tiny_model

    from wgllm.chat import render_chat, special_strings, strip_special
    from wgllm.convert import ConversionConfig, convert_checkpoint
    from wgllm.gguf_io import GGUFFile
    from wgllm.inference import LlmInference

    g = GGUFFile(assets.qwen25_coder_path())
    templates = {"qwen2.5": g.get("tokenizer.chat_template"), "qwen3": QWEN3_TEMPLATE.read_text(encoding="utf-8")}
    g.close()
    # Phi-3.5-mini's (its tokenizer_config.json's; MIT): rendered here as the others, eos_token left empty as formatChat's default
    templates["phi3.5"] = (REPO / "tests/data/phi3/phi3.5_chat_template.jinja").read_text(encoding="utf-8")
    # SmolLM3's (Apache-2.0): {% generation %} blocks, strftime_now, its own XML tool section
    templates["smollm3"] = (REPO / "tests/data/smollm3/smollm3_chat_template.jinja").read_text(encoding="utf-8")
    expected: dict = {"stamp": stamp, "templates": templates, "cases": cases()}
    expected["rendered"] = {name: [transformers_render(t, c) for c in expected["cases"]] for name, t in templates.items()}

    model = out / "qwen3-chat.gguf"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "qwen3"
        shutil.copytree(tiny_model("qwen3").folder, folder)
        config = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": templates["qwen3"]}))
        convert_checkpoint(ConversionConfig(str(folder), "safetensors", output_file=str(model), attention_quant_bits=8, feedforward_quant_bits=8, embedding_quant_bits=8))
    with LlmInference.create_from_options(str(model), force_f32=True, **CHAT_OPTIONS) as llm:
        tok = llm.model.tokenizer
        template = llm.model.gguf.get("tokenizer.chat_template")
        assert template == templates["qwen3"]
        bos, eos = special_strings(tok)
        prompt = strip_special(render_chat(template, CONVERSATION, bos_token=bos, eos_token=eos), tok)
        answer = llm.generate_response(prompt)
    expected["chat"] = {"model": model.name, "options": CHAT_OPTIONS, "conversation": CONVERSATION, "prompt": prompt, "answer": answer}
    tmp_path = expected_path.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(expected))
    tmp_path.rename(expected_path)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
