"""The MediaPipe peer benchmark's model (issue 14): a random-weight, full-size Gemma-2B checkpoint and
a 256,000-piece SentencePiece tokenizer trained on text found on this machine.

    python bench/mediapipe_peer_model.py OUT_DIR        (the repo's .venv: torch, transformers, sentencepiece)

Writes OUT_DIR/{config.json, model.safetensors, tokenizer.model, corpus.txt, made.json}; each step is
skipped when its file is there. google/gemma-2b's config is written out by hand (the hub is not
reachable here); the weights are transformers' own initialisation of GemmaForCausalLM (normal, std
0.02; RMSNorm offsets 0) under torch.manual_seed(SEED), stored as bf16 with the tied embedding once,
under google/gemma-2b's tensor names.
"""

import glob
import gzip
import json
import os
import sys
import time
from pathlib import Path

SEED = 14
VOCAB_SIZE = 256000
# google/gemma-2b's config.json, by hand (its fields as the hub has them)
GEMMA_2B_CONFIG = {
    "architectures": ["GemmaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "head_dim": 256,
    "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 16384,
    "max_position_embeddings": 8192,
    "model_type": "gemma",
    "num_attention_heads": 8,
    "num_hidden_layers": 18,
    "num_key_value_heads": 1,
    "pad_token_id": 0,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": VOCAB_SIZE,
}


def corpus_files() -> list[str]:
    """Text on this machine: Python's standard library sources, then /usr/share/doc and licences."""
    files = sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True))
    for pattern in ("/usr/share/doc/**/*", "/usr/share/common-licenses/*"):
        files += sorted(f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f) and not os.path.islink(f))
    return files


def write_corpus(path: Path, limit_bytes: int = 40 << 20) -> dict:
    """One line per source line, non-blank, at most 2,000 characters (SentencePiece's sentence limit is 4,192 bytes)."""
    n_files = n_bytes = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for f in corpus_files():
            try:
                raw = gzip.open(f).read() if f.endswith(".gz") else open(f, "rb").read()
                text = raw.decode("utf-8")
            except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
                continue  # binary files, images, broken archives
            lines = [line[:2000] for line in text.splitlines() if line.strip()]
            if not lines:
                continue
            chunk = "\n".join(lines) + "\n"
            out.write(chunk)
            n_files += 1
            n_bytes += len(chunk.encode())
            if n_bytes >= limit_bytes:
                break
    os.replace(tmp, path)
    return {"files": n_files, "bytes": n_bytes}


def train_tokenizer(corpus: Path, prefix: Path) -> dict:
    """BPE with byte fallback, Gemma's special pieces at Gemma's ids (<pad> 0, <eos> 1, <bos> 2, <unk> 3)."""
    import sentencepiece as spm

    t = time.time()
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        max_sentence_length=8192,
        num_threads=2,
        hard_vocab_limit=False,
    )
    sp = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
    return {"seconds": round(time.time() - t, 1), "pieces": sp.get_piece_size()}


def pad_tokenizer(model_file: Path) -> int:
    """When BPE stops short of VOCAB_SIZE (the text has no more pairs), fill up with user-defined
    pieces `<unused_N>`, as Gemma's own vocabulary carries <unused0>..<unused98>. Returns how many."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.ParseFromString(model_file.read_bytes())
    missing = VOCAB_SIZE - len(m.pieces)
    for i in range(missing):
        p = m.pieces.add()
        p.piece, p.score, p.type = f"<unused_{i}>", 0.0, pb.ModelProto.SentencePiece.USER_DEFINED
    if missing > 0:
        model_file.write_bytes(m.SerializeToString())
    return max(missing, 0)


def make_checkpoint(out: Path) -> dict:
    import torch
    from safetensors.torch import save_file
    from transformers import GemmaConfig, GemmaForCausalLM

    t = time.time()
    torch.manual_seed(SEED)
    torch.set_default_dtype(torch.bfloat16)
    config = GemmaConfig(**{k: v for k, v in GEMMA_2B_CONFIG.items() if k not in ("architectures", "torch_dtype", "rope_scaling")})
    with torch.no_grad():
        model = GemmaForCausalLM(config)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied
    n_params = sum(v.numel() for v in state.values())
    tmp = out / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / "model.safetensors")
    return {"seconds": round(time.time() - t, 1), "parameters": n_params, "tensors": len(state)}


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/mediapipe_peer_model.py OUT_DIR")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    made_path = out / "made.json"
    made = json.loads(made_path.read_text()) if made_path.exists() else {}
    if not (out / "corpus.txt").exists():
        made["corpus"] = write_corpus(out / "corpus.txt")
        print("corpus:", made["corpus"], flush=True)
    if not (out / "tokenizer.model").exists():
        made["tokenizer"] = train_tokenizer(out / "corpus.txt", out / "spm")
        made["tokenizer"]["padded_user_defined"] = pad_tokenizer(out / "spm.model")
        os.replace(out / "spm.model", out / "tokenizer.model")
        print("tokenizer:", made["tokenizer"], flush=True)
    (out / "config.json").write_text(json.dumps(GEMMA_2B_CONFIG, indent=2) + "\n")
    if not (out / "model.safetensors").exists():
        made["checkpoint"] = make_checkpoint(out)
        made["checkpoint"]["seed"] = SEED
        print("checkpoint:", made["checkpoint"], flush=True)
    made_path.write_text(json.dumps(made, indent=2) + "\n")


if __name__ == "__main__":
    main()
