"""ftprep: turn a dataset of examples into validated OpenAI fine-tuning files and upload them."""

__version__ = "0.1.0"
