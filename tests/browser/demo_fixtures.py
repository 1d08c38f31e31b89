"""What the demo page must answer: SmolLM2's chat template over one user turn, run by Python.

    python tests/browser/demo_fixtures.py OUT.json QUESTION MAX_TOKENS

The page (web/demo) formats the conversation with the model's chat template through LlmChat and
generates with the options in its URL; this renders the same template with jinja2 as transformers
does and asks wgllm.inference.LlmInference (WebGPU on lavapipe) with the same options.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jinja2.sandbox

from wgllm.assets import default_model_path
from wgllm.gguf_io import GGUFFile
from wgllm.inference import LlmInference


def main(out: Path, question: str, max_tokens: int) -> None:
    model = default_model_path()
    meta = GGUFFile(model).metadata
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    tokens = meta["tokenizer.ggml.tokens"]
    bos = tokens[int(meta["tokenizer.ggml.bos_token_id"])]
    eos = tokens[int(meta["tokenizer.ggml.eos_token_id"])]
    prompt = env.from_string(meta["tokenizer.chat_template"]).render(
        messages=[{"role": "user", "content": question}], add_generation_prompt=True, bos_token=bos, eos_token=eos
    )
    # force_f32: the browser (SwiftShader, no shader-f16) keeps an f32 KV cache; so does this answer
    with LlmInference.create_from_options(str(model), max_tokens=max_tokens, force_f32=True) as llm:
        if llm.model.tokenizer.add_bos and prompt.startswith(bos):  # LlmChat keeps a single BOS
            prompt = prompt[len(bos):]
        answer = llm.generate_response(prompt)
    out.write_text(json.dumps({"model": model.name, "prompt": prompt, "answer": answer}, ensure_ascii=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
