"""loratune: pick LoRA fine-tuning hyperparameters by evidence."""

__version__ = "0.1.0"
