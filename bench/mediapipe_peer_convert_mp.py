"""MediaPipe's own converter for the peer benchmark's checkpoint (issue 14): int4 attention and
feed-forward, int8 embedding, backend "gpu", as MediaPipe's LLM Inference guide converts Gemma-2B.

    MP_VENV/bin/python bench/mediapipe_peer_convert_mp.py CKPT_DIR OUT.bin     (mediapipe==0.10.21, torch)

The weight files go to a folder beside OUT.bin (removed afterwards); OUT.bin is written under a temp
name and renamed.
"""

import os
import shutil
import sys
import time

from mediapipe.tasks.python.genai import converter


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python bench/mediapipe_peer_convert_mp.py CKPT_DIR OUT.bin")
    ckpt, out = sys.argv[1], os.path.abspath(sys.argv[2])
    work = out + ".weights"
    tmp = out + ".tmp"
    t = time.time()
    config = converter.ConversionConfig(
        input_ckpt=os.path.join(ckpt, "model.safetensors"),
        ckpt_format="safetensors",
        model_type="GEMMA_2B",
        backend="gpu",
        output_dir=work,
        combine_file_only=False,
        vocab_model_file=os.path.join(ckpt, "tokenizer.model"),
        output_tflite_file=tmp,
        attention_quant_bits=4,
        feedforward_quant_bits=4,
        embedding_quant_bits=8,
    )
    converter.convert_checkpoint(config)
    os.replace(tmp, out)
    shutil.rmtree(work, ignore_errors=True)
    print(f"{out}: {os.path.getsize(out)} bytes in {time.time() - t:.1f} s")


if __name__ == "__main__":
    main()
