"""A tiny random-init Qwen2 model built locally, with no download: the local twin's model.

Under 1 MB: a byte-level BPE tokenizer trained on a few lines of text, a chat template and a
2-layer Qwen2ForCausalLM. With a grammar backend it still answers in the requested JSON shape —
the grammar, not the weights, decides the shape — and random weights make it a good fuzzer.
head_dim is 64 because vLLM's CPU attention rejects 16.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_MODEL_MAX_LEN = 2048
"""Context length of the tiny model (its max_position_embeddings)."""

_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CORPUS = [
    '{"name": "Ada", "age": 36, "tags": ["math", "engines"], "active": true, "score": 9.5}',
    "The quick brown fox jumps over the lazy dog. 0123456789 !?.,:;'\"()[]{}<>/\\|-_+=*&^%$#@~`",
    "user assistant system: return a JSON object that matches the schema, nothing else.",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz null true false",
]
_MARKER = "liftdeploy-tiny-model.json"


def build_tiny_model(path: str | Path, *, seed: int = 0) -> Path:
    """Write the tiny model to `path` (idempotent: an existing complete build is reused)."""
    path = Path(path)
    if (path / _MARKER).exists():
        return path
    if path.exists() and not path.is_dir():
        from liftdeploy.errors import TwinError

        raise TwinError(f"{path} is a file; give a directory (new or empty) for the tiny model")
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer(path)
    _build_weights(path, vocab_size=len(tokenizer), seed=seed)
    (path / _MARKER).write_text(json.dumps({"seed": seed, "max_len": TINY_MODEL_MAX_LEN}))
    return path


def _build_tokenizer(path: Path):  # noqa: ANN202 - transformers type
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its bar prints blank lines into the caller's output
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        model_max_length=TINY_MODEL_MAX_LEN,
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return tokenizer


def _build_weights(path: Path, *, vocab_size: int, seed: int) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one 1 MB shard: a bar is noise
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=TINY_MODEL_MAX_LEN,
        tie_word_embeddings=True,
        eos_token_id=_SPECIAL_TOKENS.index("<|im_end|>"),
        bos_token_id=None,
        pad_token_id=_SPECIAL_TOKENS.index("<|endoftext|>"),
        torch_dtype="float32",
    )
    Qwen2ForCausalLM(config).save_pretrained(path, safe_serialization=True)


# -- tiny checkpoints of other families: the planner's tests build them with transformers' own
# model classes (the real module structure) and hold the planner against their bytes and
# against what vLLM's CPU engine reports for them. ---------------------------------------------

FAMILY_VOCAB = 640
"""A multiple of 64, so vLLM's vocabulary padding adds nothing and the tokenizer (under 600
tokens) fits."""
_COMMON = dict(
    vocab_size=FAMILY_VOCAB,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=64,
    max_position_embeddings=TINY_MODEL_MAX_LEN,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=_SPECIAL_TOKENS.index("<|im_end|>"),
)
_MOE = dict(num_experts_per_tok=2, moe_intermediate_size=64)

TINY_FAMILIES: dict[str, tuple[str, str, dict]] = {
    # family: (transformers config class, model class, config overrides)
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
    "mixtral": (
        "MixtralConfig",
        "MixtralForCausalLM",
        {"num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 96},
    ),
    "qwen2_moe": (
        "Qwen2MoeConfig",
        "Qwen2MoeForCausalLM",
        {
            **_MOE,
            "num_hidden_layers": 3,
            "num_experts": 4,
            "mlp_only_layers": [0],
            "shared_expert_intermediate_size": 128,
        },
    ),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", {**_MOE, "num_experts": 4}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {}),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {"sliding_window": TINY_MODEL_MAX_LEN, "query_pre_attn_scalar": 64},
    ),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"num_key_value_heads": 2}),
    "deepseek_v2": (
        "DeepseekV2Config",
        "DeepseekV2ForCausalLM",
        {
            **_MOE,
            "num_hidden_layers": 3,
            "n_routed_experts": 4,
            "n_shared_experts": 1,
            "first_k_dense_replace": 1,
            "q_lora_rank": None,
            "kv_lora_rank": 64,
            "qk_nope_head_dim": 64,
            "qk_rope_head_dim": 32,
            "v_head_dim": 64,
            "num_key_value_heads": 2,
            "topk_method": "greedy",
            "n_group": 1,
            "topk_group": 1,
        },
    ),
    "deepseek_v3": (
        "DeepseekV3Config",
        "DeepseekV3ForCausalLM",
        {
            **_MOE,
            "num_hidden_layers": 3,
            "n_routed_experts": 4,
            "n_shared_experts": 1,
            "first_k_dense_replace": 1,
            "q_lora_rank": 96,
            "kv_lora_rank": 64,
            "qk_nope_head_dim": 64,
            "qk_rope_head_dim": 32,
            "v_head_dim": 64,
            "num_key_value_heads": 2,
            "n_group": 1,
            "topk_group": 1,
            "topk_method": "noaux_tc",
        },
    ),
    "gpt_oss": (
        "GptOssConfig",
        "GptOssForCausalLM",
        {
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "intermediate_size": 64,
            "sliding_window": TINY_MODEL_MAX_LEN,
            "max_position_embeddings": 131072,
        },
    ),
}


def build_family_model(path: str | Path, family: str, *, seed: int = 0) -> Path:
    """A tiny random bf16 checkpoint of `family` (a TINY_FAMILIES key) built with transformers'
    own classes, with the twin's tokenizer; idempotent like build_tiny_model."""
    import torch
    import transformers
    from transformers.utils import logging as transformers_logging

    path = Path(path)
    if (path / _MARKER).exists():
        return path
    config_class, model_class, overrides = TINY_FAMILIES[family]
    path.mkdir(parents=True, exist_ok=True)
    _build_tokenizer(path)
    transformers_logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = getattr(transformers, config_class)(**{**_COMMON, **overrides})
    model = getattr(transformers, model_class)(config).to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    (path / _MARKER).write_text(json.dumps({"seed": seed, "family": family}))
    return path
