#!/usr/bin/env python3
"""Write a tiny llama-architecture GGUF model with random weights.

The model loads in llama.cpp in milliseconds and generates arbitrary
tokens, which is enough to test the serving path (loading, chat template,
tokenizer, sampling, streaming) without a real model. Its vocabulary has
the 256 byte tokens, so generated text often splits a UTF-8 character
across tokens, and ChatML control tokens, so llama.cpp recognises its
chat template. The control tokens get zero output weights while the
other tokens' logits spread widely, so the model practically never ends
a generation by itself: max_tokens or the context decides the length.

Usage: make-tiny-gguf.py OUTPUT.gguf [--seed N] [--context-length N]

Needs the `gguf` and `numpy` packages (image/requirements.txt).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, LlamaFileType, TokenType

ARCHITECTURE = "llama"
EMBEDDING = 64
FEED_FORWARD = 128
LAYERS = 2
HEADS = 4
RMS_EPSILON = 1e-5

# ChatML, as SmolLM2 and many other models use it. llama.cpp recognises it
# by the <|im_start|> marker (src/llama-chat.cpp).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Whole-word pieces, so tokenizing plain English does not fall back to
# bytes for every character. "\u2581" is SentencePiece's word boundary.
WORD_PIECES = [
    "\u2581", "\u2581the", "\u2581a", "\u2581is", "\u2581Hello", "\u2581hello",
    "\u2581world", "\u2581Say", "\u2581You", "\u2581are", "\u2581terse",
    "\u2581user", "\u2581assistant", "\u2581system", "e", "t", "o", "a", "n",
    "s", "r", "i", "l", ".", ",", "!", "?", "\u00e9", "\u2581caf\u00e9",
]


def vocabulary():
    """Return the tokens, their scores and their types."""
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL,
             TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{byte:02X}>" for byte in range(256)]
    types += [TokenType.BYTE] * 256
    tokens += WORD_PIECES
    types += [TokenType.NORMAL] * len(WORD_PIECES)
    # SentencePiece prefers the merge with the higher score; longer pieces
    # win over bytes this way.
    scores = [0.0] * 5 + [-1000.0] * 256 + [-float(i) for i in range(len(WORD_PIECES))]
    return tokens, scores, types


def write_model(path: Path, seed: int, context_length: int) -> None:
    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()
    vocab_size = len(tokens)

    def weights(*shape, scale=0.5):
        # numpy's (rows, columns) is GGUF's (columns, rows): ggml lists the
        # fastest-varying dimension first, and the writer reverses it.
        return rng.normal(0.0, scale, size=shape).astype(np.float32)

    # After the RMS norm the hidden state has a norm of about sqrt(64) = 8,
    # so with this scale ordinary logits have a standard deviation of about
    # 12 and the best one is near 30, while control tokens score 0.
    output = weights(vocab_size, EMBEDDING, scale=1.5)
    control = [index for index, kind in enumerate(types) if kind in (TokenType.CONTROL, TokenType.UNKNOWN)]
    output[control] = 0.0

    writer = GGUFWriter(str(path), ARCHITECTURE)
    writer.add_name("tiny random llama")
    writer.add_file_type(LlamaFileType.ALL_F32)
    writer.add_context_length(context_length)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(EMBEDDING // HEADS)
    writer.add_layer_norm_rms_eps(RMS_EPSILON)

    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHAT_TEMPLATE)

    writer.add_tensor("token_embd.weight", weights(vocab_size, EMBEDDING))
    writer.add_tensor("output_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    for layer in range(LAYERS):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        writer.add_tensor(f"{prefix}.attn_q.weight", weights(EMBEDDING, EMBEDDING))
        writer.add_tensor(f"{prefix}.attn_k.weight", weights(EMBEDDING, EMBEDDING))
        writer.add_tensor(f"{prefix}.attn_v.weight", weights(EMBEDDING, EMBEDDING))
        writer.add_tensor(f"{prefix}.attn_output.weight", weights(EMBEDDING, EMBEDDING))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weights(FEED_FORWARD, EMBEDDING))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weights(FEED_FORWARD, EMBEDDING))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weights(EMBEDDING, FEED_FORWARD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="GGUF file to write")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random weights (default 1)")
    parser.add_argument("--context-length", type=int, default=4096,
                        help="trained context length to record, in tokens (default 4096)")
    args = parser.parse_args()
    if args.context_length < 64:
        parser.error(f"--context-length {args.context_length} is below 64, the appliance's minimum context")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_model(args.output, args.seed, args.context_length)
    print(f"make-tiny-gguf: wrote {args.output} ({args.output.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
