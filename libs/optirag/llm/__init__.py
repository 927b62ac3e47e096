"""The LLM scorer: model preparation/loading, Yes/No CTR scoring and LoRA instruction tuning.

Modules import torch/transformers lazily per module; this package init stays light.
"""
