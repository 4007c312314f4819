"""What ftprep knows about OpenAI's fine-tunable models: one table, dated, with its sources.

Per-example token limits: OpenAI fine-tuning guide, "Token limits"
(https://platform.openai.com/docs/guides/fine-tuning#token-limits).
Training prices (USD per 1M training tokens): https://openai.com/api/pricing/ (fine-tuning section).
Limits and training prices as of PRICES_AS_OF; inference prices (per 1M input/output tokens, base and
fine-tuned, for evaluate's cost) at the end of this module, as of INFERENCE_PRICES_AS_OF. Prices change:
pass --price-per-million (or set FTPREP_TRAINING_PRICE_PER_1M) to override the training price, and update
these tables when OpenAI's page changes.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2025-06-01"
DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"


@dataclass(frozen=True)
class ModelSpec:
    encoding: str
    max_tokens_per_example: int
    training_usd_per_1m_tokens: float


MODELS: dict[str, ModelSpec] = {
    "gpt-4o-mini-2024-07-18": ModelSpec("o200k_base", 65_536, 3.00),
    "gpt-4o-2024-08-06": ModelSpec("o200k_base", 65_536, 25.00),
    "gpt-4.1-2025-04-14": ModelSpec("o200k_base", 65_536, 25.00),
    "gpt-4.1-mini-2025-04-14": ModelSpec("o200k_base", 65_536, 5.00),
    "gpt-4.1-nano-2025-04-14": ModelSpec("o200k_base", 65_536, 1.50),
    "gpt-3.5-turbo-0125": ModelSpec("cl100k_base", 16_385, 8.00),
}

# OpenAI's default epoch choice for a dataset (the fine-tuning data-preparation cookbook):
# aim at 3 epochs, but keep the number of example passes between 100 and 25,000.
TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES = 3, 100, 25_000
MIN_DEFAULT_EPOCHS, MAX_DEFAULT_EPOCHS = 1, 25
MIN_EXAMPLES = 10  # files with fewer examples are rejected by OpenAI


def model_spec(model: str) -> ModelSpec:
    from ftprep.errors import InputError

    spec = MODELS.get(model)
    if spec is None:
        raise InputError(f"unknown model {model!r}; use one of {', '.join(MODELS)} (see ftprep/openai_models.py)")
    return spec


def default_epochs(n_examples: int) -> int:
    if n_examples <= 0:
        return 0
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


# ---------------------------------------------------------------------------------------- inference prices
# USD per 1M tokens (input, output) for chat completions: https://openai.com/api/pricing/ ("Text tokens",
# standard tier) and, for fine-tuned models, the same page's fine-tuning section ("Input", "Output" of the
# fine-tuned model's inference), as of INFERENCE_PRICES_AS_OF. A model ``ft:BASE:org:suffix:id`` is priced at
# BASE's fine-tuned inference price. A model not in the table is still evaluated; its cost shows as "n/a".
INFERENCE_PRICES_AS_OF = "2025-06-01"


@dataclass(frozen=True)
class InferencePrice:
    input_usd_per_1m: float
    output_usd_per_1m: float
    fine_tuned_input_usd_per_1m: float | None = None
    fine_tuned_output_usd_per_1m: float | None = None


INFERENCE_PRICES: dict[str, InferencePrice] = {
    "gpt-4o-mini-2024-07-18": InferencePrice(0.15, 0.60, 0.30, 1.20),
    "gpt-4o-2024-08-06": InferencePrice(2.50, 10.00, 3.75, 15.00),
    "gpt-4.1-2025-04-14": InferencePrice(2.00, 8.00, 3.00, 12.00),
    "gpt-4.1-mini-2025-04-14": InferencePrice(0.40, 1.60, 0.80, 3.20),
    "gpt-4.1-nano-2025-04-14": InferencePrice(0.10, 0.40, 0.20, 0.80),
    "gpt-3.5-turbo-0125": InferencePrice(0.50, 1.50, 3.00, 6.00),
}
# Undated names OpenAI resolves to these snapshots (as of the same date).
ALIASES = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06", "gpt-4.1": "gpt-4.1-2025-04-14",
           "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
           "gpt-3.5-turbo": "gpt-3.5-turbo-0125"}


def base_of(model: str) -> str | None:
    """The base model of a fine-tuned model name (``ft:gpt-4o-mini-2024-07-18:org:suffix:id``), else None."""
    parts = model.split(":")
    return parts[1] if len(parts) >= 2 and parts[0] == "ft" and parts[1] else None


def inference_price(model: str) -> tuple[float, float] | None:
    """USD per 1M (input, output) tokens for chat with ``model``, or None when the table does not know it."""
    base = base_of(model)
    spec = INFERENCE_PRICES.get(ALIASES.get(base or model, base or model))
    if spec is None:
        return None
    if base is None:
        return spec.input_usd_per_1m, spec.output_usd_per_1m
    if spec.fine_tuned_input_usd_per_1m is None or spec.fine_tuned_output_usd_per_1m is None:
        return None
    return spec.fine_tuned_input_usd_per_1m, spec.fine_tuned_output_usd_per_1m


def inference_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The cost in USD of these tokens with ``model`` from the dated table, or None when it is not known."""
    price = inference_price(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
