"""What ftprep knows about OpenAI's fine-tunable models: one table, dated, with its sources.

Per-example token limits: OpenAI fine-tuning guide, "Token limits"
(https://platform.openai.com/docs/guides/fine-tuning#token-limits).
Training prices (USD per 1M training tokens): https://openai.com/api/pricing/ (fine-tuning section).
Both as of PRICES_AS_OF. Prices change: pass --price-per-million (or set FTPREP_TRAINING_PRICE_PER_1M)
to override, and update this table when OpenAI's page changes.
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
