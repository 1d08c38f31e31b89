"""The `wgllm` command: convert, inspect, tokenize, detokenize, logits, generate, bench, diff.

Each subcommand imports what it needs when it runs, so one missing optional piece (torch for the
converter, say) does not stop the others. Errors in the input (a bad file, option or id) end in
one line `wgllm: error: <message>` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from wgllm import __version__
from wgllm.errors import ConversionError, ModelFormatError

EXIT_ERROR = 2
FORCE_F32_HELP = "gpu: keep the KV cache in f32 even where the adapter has shader-f16 (default there: f16)"
_PYTORCH_SUFFIXES = (".bin", ".pt", ".pth")


class UsageError(ValueError):
    """A command-line value that cannot be used."""


# -- convert ---------------------------------------------------------------------------------------


def _guess_ckpt_format(input_ckpt: str) -> str:
    """safetensors or pytorch, from the checkpoint's file names (a file, a glob, or a folder)."""
    path = Path(input_ckpt)
    if path.is_dir():
        names = [p.name for p in path.iterdir() if p.is_file()]
    elif glob.has_magic(input_ckpt):
        names = [Path(p).name for p in glob.glob(input_ckpt)] or [path.name]
    else:
        names = [path.name]
    if any(n.endswith(".safetensors") for n in names):
        return "safetensors"
    if any(n.endswith(_PYTORCH_SUFFIXES) for n in names):
        return "pytorch"
    raise UsageError(f"cannot tell the checkpoint format of {input_ckpt} from its file names; give --ckpt-format")


def cmd_convert(args: argparse.Namespace) -> None:
    from wgllm.convert import ConversionConfig, convert_checkpoint

    if args.output is None and args.lora_ckpt is None:
        raise UsageError("--output is required (it may be left out only for a LoRA-only conversion with --lora-ckpt and --lora-output)")
    if args.lora_ckpt is not None and args.lora_output is None:
        raise UsageError("--lora-ckpt needs --lora-output FILE (the GGUF adapter to write)")
    config = ConversionConfig(
        input_ckpt=args.input_ckpt,
        ckpt_format=args.ckpt_format or _guess_ckpt_format(args.input_ckpt),
        model_type=args.model_type,
        vocab_model_file=args.vocab_model_file,
        output_file=args.output,
        attention_quant_bits=args.attention_quant_bits,
        feedforward_quant_bits=args.feedforward_quant_bits,
        embedding_quant_bits=args.embedding_quant_bits,
        lora_ckpt=args.lora_ckpt,
        lora_rank=args.lora_rank,
        lora_output_file=args.lora_output,
    )
    out = convert_checkpoint(config)
    if args.output is not None:
        print(f"wrote {out}", file=sys.stderr)
    if args.lora_output is not None:
        print(f"wrote {args.lora_output}", file=sys.stderr)


# -- inspect ---------------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _short(value: Any, limit: int = 8) -> str:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list) and len(value) > limit:
        return f"[{', '.join(map(repr, value[:limit]))}, ...] ({len(value)} values)"
    if isinstance(value, float):
        return f"{value:.7g}"  # float32 values read back as doubles: show the digits they hold
    return repr(value) if isinstance(value, str) else str(value)


def inspect_text(path: str) -> str:
    """A human-readable summary of a GGUF file (only its header is read)."""
    from gguf import GGML_QUANT_SIZES, LlamaFileType

    from wgllm.gguf_io import GGUFFile

    g = GGUFFile(path)
    md = g.metadata
    arch = g.architecture
    tensors = list(g.tensors.values())
    n_params = sum(t.n_elements for t in tensors)
    n_bytes = sum(t.n_bytes for t in tensors)
    lines = [
        f"file:           {g.path} ({_size(g.path.stat().st_size)}, GGUF version {g.version})",
        f"architecture:   {arch}",
        f"name:           {md.get('general.name', '(none)')}",
    ]
    if isinstance(md.get("general.file_type"), int):
        try:
            lines.append(f"file type:      {LlamaFileType(md['general.file_type']).name}")
        except ValueError:
            lines.append(f"file type:      {md['general.file_type']} (unknown)")
    lines += [
        f"parameters:     {n_params:,} ({n_params / 1e6:.1f} M)",
        f"tensor data:    {n_bytes:,} bytes ({_size(n_bytes)}) in {len(tensors)} tensors",
        "",
        f"hyperparameters ({arch}.*):",
    ]
    prefix = f"{arch}."
    for key, value in md.items():
        if key.startswith(prefix):
            lines.append(f"  {key[len(prefix):]:<40} {_short(value)}")

    lines += ["", "tensor types:", f"  {'type':<6} {'tensors':>8} {'parameters':>14} {'bytes':>14}"]
    by_type: dict[Any, list[int]] = {}  # ggml type -> [tensors, parameters, bytes]
    for t in tensors:
        row = by_type.setdefault(t.ggml_type, [0, 0, 0])
        row[0] += 1
        row[1] += t.n_elements
        row[2] += t.n_bytes
    for ggml_type, (count, params, size) in sorted(by_type.items(), key=lambda kv: -kv[1][2]):
        block, type_size = GGML_QUANT_SIZES[ggml_type]
        bits = 8 * type_size / block
        lines.append(f"  {ggml_type.name:<6} {count:>8} {params:>14,} {size:>14,}   ({bits:.2f} bits/weight)")

    tokens = md.get("tokenizer.ggml.tokens")
    lines += ["", "tokenizer:"]
    lines.append(f"  model            {md.get('tokenizer.ggml.model', '(none)')}")
    lines.append(f"  pre              {md.get('tokenizer.ggml.pre', '(none)')}")
    lines.append(f"  vocab size       {len(tokens) if isinstance(tokens, list) else '(no token list)'}")
    merges = md.get("tokenizer.ggml.merges")
    if isinstance(merges, list):
        lines.append(f"  merges           {len(merges)}")
    for key, value in md.items():
        if key.startswith("tokenizer.ggml.") and key.endswith("_token_id"):
            what = key[len("tokenizer.ggml.") : -len("_token_id")]
            text = f"  {tokens[value]!r}" if isinstance(tokens, list) and isinstance(value, int) and 0 <= value < len(tokens) else ""
            lines.append(f"  {what + ' id':<16} {value}{text}")
    for key in ("add_bos_token", "add_eos_token", "add_space_prefix"):
        if f"tokenizer.ggml.{key}" in md:
            lines.append(f"  {key:<16} {md[f'tokenizer.ggml.{key}']}")

    template = md.get("tokenizer.chat_template")
    if isinstance(template, str):
        t_lines = template.splitlines() or [""]
        shown = 6
        lines += ["", f"chat template ({len(template)} characters, {len(t_lines)} lines):"]
        lines += [f"  {line[:160]}" for line in t_lines[:shown]]
        if len(t_lines) > shown:
            lines.append(f"  ... ({len(t_lines) - shown} more lines)")
    else:
        lines += ["", "chat template:  (none)"]
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> None:
    print(inspect_text(args.file))


# -- tokenize / detokenize ------------------------------------------------------------------------


def _tokenizer(path: str):
    from wgllm.gguf_io import GGUFFile
    from wgllm.tokenizer import Tokenizer

    return Tokenizer.from_gguf(GGUFFile(path))


def parse_ids(text: str, option: str = "--ids") -> list[int]:
    try:
        ids = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{option}: not valid JSON ({e}); expected a list of token ids like [1, 2, 3]") from None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise UsageError(f"{option}: expected a JSON list of integer token ids, got {text[:80]!r}")
    return ids


def cmd_tokenize(args: argparse.Namespace) -> None:
    if args.texts_json is not None:
        source = Path(args.texts_json)
        try:
            texts = json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UsageError(f"{source}: not valid JSON ({e})") from None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise UsageError(f"{source}: expected a JSON list of strings")
    tok = _tokenizer(args.model)
    encode: Callable[[str], list[int]] = lambda s: tok.encode(s, add_special=args.add_special, parse_special=args.parse_special)  # noqa: E731
    result = encode(args.text) if args.texts_json is None else [encode(t) for t in texts]
    print(json.dumps(result))


def cmd_detokenize(args: argparse.Namespace) -> None:
    ids = parse_ids(args.ids)
    print(_tokenizer(args.model).decode(ids))


# -- logits / generate -----------------------------------------------------------------------------


def cmd_logits(args: argparse.Namespace) -> None:
    from wgllm import reference
    from wgllm.gguf_io import atomic_output
    from wgllm.model import load_model

    ids = parse_ids(args.ids)
    if not ids:
        raise UsageError("--ids: give at least one token id")
    if args.kernels is not None and args.backend != "gpu":
        raise UsageError(f"--kernels {args.kernels} chooses the WebGPU kernel family: it needs --backend gpu")
    model = load_model(args.model)
    adapter = None
    if args.lora is not None:
        from wgllm.lora import check_lora, load_lora

        adapter = load_lora(args.lora)
        check_lora(adapter, model)
    if args.backend == "gpu":
        from wgllm.gpu.engine import GpuEngine

        engine = GpuEngine(
            model, max_tokens=len(ids), all_logits=True, force_f32=args.force_f32, lora_ranks=[adapter.rank] if adapter else None, kernels=args.kernels
        )
        logits = engine.forward_logits(ids, 0, engine.load_lora(adapter) if adapter else None)
    else:
        logits = np.asarray(reference.forward(model, ids, lora=adapter), dtype=np.float32)  # (len(ids), vocab)
    with atomic_output(args.out) as tmp, open(tmp, "wb") as f:  # a file object: np.save adds no suffix
        np.save(f, logits)
    print(f"wrote {args.out}: float32 logits of shape {logits.shape}", file=sys.stderr)


def cmd_generate(args: argparse.Namespace) -> None:
    from wgllm.generation import check_sampling_options
    from wgllm.inference import LlmInference

    check_sampling_options(args.max_tokens, args.top_k, args.temperature, args.seed)  # before any download
    if args.model is None:
        from wgllm.assets import default_model_path

        args.model = str(default_model_path())
    lora_ranks = None
    if args.lora is not None:
        from wgllm.lora import load_lora

        lora_ranks = [load_lora(args.lora).rank]  # the file is read again (and checked) by load_lora_model
    llm = LlmInference.create_from_options(
        args.model,
        max_tokens=args.max_tokens,
        top_k=args.top_k,
        temperature=args.temperature,
        random_seed=args.seed,
        backend=args.backend,
        lora_ranks=lora_ranks,
        force_f32=args.force_f32,
        kernels=args.kernels,
    )

    def listener(piece: str, done: bool) -> None:
        sys.stdout.write(piece + ("\n" if done else ""))
        sys.stdout.flush()

    with llm:
        lora = llm.load_lora_model(args.lora) if args.lora is not None else None
        llm.generate_response(args.prompt, lora, listener=listener)


def cmd_diff(args: argparse.Namespace) -> int:
    from wgllm.diff import format_report, run_diff

    ids = parse_ids(args.ids)
    if args.tol <= 0:
        raise UsageError(f"--tol {args.tol}: expected a positive relative tolerance")
    report, absent = run_diff(args.model, ids, kernels=args.kernels, force_f32=args.force_f32, tol=args.tol, browser=not args.no_browser)
    print(format_report(report))
    if absent:
        print(f"browser engine: not run: {absent}")
    if args.json:
        from wgllm.gguf_io import atomic_output

        with atomic_output(args.json) as tmp:
            Path(tmp).write_text(json.dumps({**report, "browser_absent": absent}))
    return 1 if any(report["first_beyond_tol"].values()) else 0


def cmd_bench(args: argparse.Namespace) -> None:
    from wgllm import bench

    if args.model is None:
        from wgllm.assets import default_model_path

        args.model = str(default_model_path())
    result = bench.bench_model(args.model, args.prompt_tokens, args.gen_tokens, force_f32=args.force_f32, kernels=args.kernels)
    print(bench.format_table(result))
    if args.json:
        bench.write_json(result, args.json)


# -- main ------------------------------------------------------------------------------------------


KERNELS_HELP = (
    "the WebGPU kernel family: gpu (real GPUs) or cpu (CPU-emulated WebGPU such as lavapipe); "
    "default: chosen from the adapter. Only with --backend gpu"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wgllm", description="Quantised transformer LLMs in GGUF files: convert, inspect and run them.")
    parser.add_argument("--version", action="version", version=f"wgllm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("convert", help="convert a Hugging Face checkpoint to a GGUF file")
    p.add_argument("--input-ckpt", required=True, metavar="PATH_OR_GLOB", help="a checkpoint file, its folder, or a glob over shards")
    p.add_argument("--ckpt-format", choices=("safetensors", "pytorch"), help="default: from the file names")
    p.add_argument("--model-type", help="e.g. GEMMA_2B, PHI_2, GPT2, LLAMA (default: from config.json)")
    p.add_argument("--vocab-model-file", metavar="PATH", help="tokenizer.model / tokenizer.json, or the folder holding it (default: beside the checkpoint)")
    p.add_argument("--output", metavar="FILE", help="the GGUF file to write (leave out to convert only the LoRA adapter)")
    for group in ("attention", "feedforward", "embedding"):
        p.add_argument(f"--{group}-quant-bits", type=int, default=8, choices=(32, 16, 8, 4), metavar="BITS", help="32, 16, 8 or 4 (default 8)")
    p.add_argument("--lora-ckpt", metavar="FILE", help="a PEFT adapter_model.safetensors (adapter_config.json beside it) to convert too")
    p.add_argument("--lora-rank", type=int, metavar="R", help="the adapter's rank (checked against adapter_config.json)")
    p.add_argument("--lora-output", metavar="FILE", help="the GGUF LoRA adapter to write")
    p.set_defaults(run=cmd_convert)

    p = sub.add_parser("inspect", help="summarise a GGUF file: architecture, sizes, tensor types, tokenizer")
    p.add_argument("file")
    p.set_defaults(run=cmd_inspect)

    p = sub.add_parser("tokenize", help="print the token ids of a text as JSON")
    p.add_argument("--model", required=True, metavar="FILE")
    texts = p.add_mutually_exclusive_group(required=True)
    texts.add_argument("--text")
    texts.add_argument("--texts-json", metavar="FILE", help="a JSON list of strings; prints a list of id lists")
    p.add_argument("--add-special", action="store_true", help="add BOS/EOS as the model's tokenizer asks")
    p.add_argument("--parse-special", action="store_true", help="turn special-token text such as <|im_start|> into its id")
    p.set_defaults(run=cmd_tokenize)

    p = sub.add_parser("detokenize", help="print the text of a JSON list of token ids")
    p.add_argument("--model", required=True, metavar="FILE")
    p.add_argument("--ids", required=True, metavar="JSON", help="e.g. [1, 2, 3]")
    p.set_defaults(run=cmd_detokenize)

    p = sub.add_parser("logits", help="save the logits for a list of token ids (.npy, float32, (len(ids), vocab))")
    p.add_argument("--model", required=True, metavar="FILE")
    p.add_argument("--ids", required=True, metavar="JSON")
    p.add_argument("--backend", choices=("reference", "gpu"), default="reference")
    p.add_argument("--lora", metavar="FILE", help="a GGUF LoRA adapter to apply")
    p.add_argument("--force-f32", action="store_true", help=FORCE_F32_HELP)
    p.add_argument("--kernels", choices=("gpu", "cpu"), help=KERNELS_HELP)
    p.add_argument("--out", required=True, metavar="OUT.npy")
    p.set_defaults(run=cmd_logits)

    p = sub.add_parser("generate", help="stream a model's answer to a prompt")
    p.add_argument("--model", metavar="FILE", help="default: SmolLM2-135M-Instruct (Q4_1), fetched once")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-tokens", type=int, default=512, help="prompt and answer together (default 512)")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=("reference", "gpu"), default="reference")
    p.add_argument("--lora", metavar="FILE", help="a GGUF LoRA adapter to apply")
    p.add_argument("--force-f32", action="store_true", help=FORCE_F32_HELP)
    p.add_argument("--kernels", choices=("gpu", "cpu"), help=KERNELS_HELP)
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("bench", help="time load, prefill and decode on WebGPU against the adapter's copy bandwidth")
    p.add_argument("--model", metavar="FILE", help="default: SmolLM2-135M-Instruct (Q4_1), fetched once")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--gen-tokens", type=int, default=128)
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    p.add_argument("--force-f32", action="store_true", help=FORCE_F32_HELP)
    p.add_argument("--kernels", choices=("gpu", "cpu"), help=KERNELS_HELP)
    p.set_defaults(run=cmd_bench)

    p = sub.add_parser(
        "diff",
        help="run a prefill of --ids on the numpy reference, the Python GPU engine and the browser engine (Node on Dawn) and report "
        "the first named checkpoint (embd, blk.N.attn_norm/q/k/v/attn/attn_residual/ffn_norm/x, output_norm, logits) where they "
        "differ; exit 1 if one passes --tol",
    )
    p.add_argument("--model", required=True, metavar="FILE")
    p.add_argument("--ids", required=True, metavar="JSON", help="at least 2 token ids, e.g. [1, 2, 3]")
    p.add_argument("--kernels", choices=("gpu", "cpu"), help="the WebGPU kernel family of both engines; default: chosen from the adapter")
    p.add_argument("--force-f32", action="store_true", help=FORCE_F32_HELP)
    p.add_argument("--tol", type=float, default=1e-3, help="relative to each checkpoint's largest |value| (default 1e-3)")
    p.add_argument("--no-browser", action="store_true", help="leave out the browser engine (it needs a source checkout with web/ built and Node)")
    p.add_argument("--json", metavar="OUT", help="also write the whole comparison as JSON")
    p.set_defaults(run=cmd_diff)
    return parser


def main(argv: list[str] | None = None) -> int:
    from wgllm.assets import AssetDownloadError
    from wgllm.gpu.runtime import GpuError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and its message
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    try:
        rc = args.run(args)
    except (ModelFormatError, ConversionError, ValueError, OSError, AssetDownloadError, GpuError) as e:
        print(f"wgllm: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
