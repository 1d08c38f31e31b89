"""Qwen2 and Qwen3 beyond the per-architecture matrices (oracle, converter, GPU engine, LoRA):
files the loaders must refuse, the chat templates rendered as transformers renders them, and the
real Qwen2.5-Coder file's chat prompts tokenized as transformers' tokenizer of that file does."""

from __future__ import annotations

import pytest
from qwen_chat import QWEN3_TEMPLATE, cases, transformers_render
from tiny_models import convert_tiny, gguf_without

from wgllm.errors import ModelFormatError
from wgllm.model import load_model
from wgllm.reference import forward


def test_qwen2_without_a_qkv_bias_is_refused(tmp_path):
    full = convert_tiny("qwen2", 32, tmp_path / "qwen2.gguf")
    assert load_model(full).has("blk.1.attn_k.bias")
    broken = gguf_without(full, tmp_path / "no-bias.gguf", "blk.1.attn_k.bias")
    with pytest.raises(ModelFormatError, match=r"no-bias\.gguf: tensor blk\.1\.attn_k\.bias is missing; qwen2 has Q, K and V biases on every layer"):
        load_model(broken)


def test_qwen3_without_a_head_norm_is_refused(tmp_path):
    full = convert_tiny("qwen3", 32, tmp_path / "qwen3.gguf")
    assert forward(load_model(full), [1, 2, 3]).shape[0] == 3
    broken = gguf_without(full, tmp_path / "no-norm.gguf", "blk.1.attn_k_norm.weight")
    with pytest.raises(ModelFormatError, match=r"no-norm\.gguf: tensor blk\.1\.attn_k_norm\.weight is missing; qwen3 has an RMSNorm over each head of Q and K on every layer"):
        load_model(broken)


def test_qwen_chat_templates_render_as_transformers(qwen25_coder_path):
    """Qwen2.5's template (from the real GGUF) and Qwen3's render every case as transformers does."""
    from wgllm.chat import render_chat
    from wgllm.gguf_io import GGUFFile

    g = GGUFFile(qwen25_coder_path)
    templates = {"qwen2.5": g.get("tokenizer.chat_template"), "qwen3": QWEN3_TEMPLATE.read_text(encoding="utf-8")}
    g.close()
    assert "<|im_start|>" in templates["qwen2.5"] and "<think>" in templates["qwen3"]
    for name, template in templates.items():
        for case in cases():
            want = transformers_render(template, case)
            got = render_chat(template, case["messages"], tools=case["tools"], add_generation_prompt=case["add_generation_prompt"])
            assert got == want, (name, case["name"])
    # the cases reach the templates' branches: tools described, a tool call and its answer, reasoning kept once
    q3 = transformers_render(templates["qwen3"], next(c for c in cases() if c["name"] == "think"))
    assert q3.count("<think>") == 1 and "<think>\nsum\n</think>" in q3
    tool = transformers_render(templates["qwen2.5"], next(c for c in cases() if c["name"] == "tool+tools+prompt"))
    assert '"name": "get_weather"' in tool and "<tool_response>" in tool and "# Tools" in tool


def test_qwen3_template_travels_into_the_gguf(tmp_path):
    """The converter writes tokenizer_config.json's template into tokenizer.chat_template verbatim."""
    import json
    import shutil

    from tiny_models import tiny_model

    from wgllm.convert import ConversionConfig, convert_checkpoint
    from wgllm.gguf_io import GGUFFile

    folder = tmp_path / "qwen3"
    shutil.copytree(tiny_model("qwen3").folder, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    template = QWEN3_TEMPLATE.read_text(encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    out = convert_checkpoint(ConversionConfig(str(folder), "safetensors", output_file=str(tmp_path / "q.gguf")))
    g = GGUFFile(out)
    assert g.get("tokenizer.chat_template") == template
    g.close()


def test_qwen25_chat_prompts_tokenize_as_transformers(qwen25_coder_path):
    """Every case rendered with the real Qwen2.5-Coder file's own template, then tokenized (special
    tokens parsed, as a chat prompt is): the ids transformers' tokenizer of the same GGUF gives."""
    from transformers import AutoTokenizer

    from wgllm.chat import render_chat

    hf = AutoTokenizer.from_pretrained(str(qwen25_coder_path.parent), gguf_file=qwen25_coder_path.name)
    model = load_model(qwen25_coder_path)
    tok, template = model.tokenizer, model.gguf.get("tokenizer.chat_template")
    for case in cases():
        text = render_chat(template, case["messages"], tools=case["tools"], add_generation_prompt=case["add_generation_prompt"])
        assert tok.encode(text, add_special=True, parse_special=True) == hf(text)["input_ids"], case["name"]
    # the turn markers are one special token each, not their characters
    im_start = hf.convert_tokens_to_ids("<|im_start|>")
    assert tok.encode("<|im_start|>user", parse_special=True)[0] == im_start
    assert im_start not in tok.encode("<|im_start|>user", parse_special=False)
