"""Conventional CTR baselines (paper Table 2, "full-shot"): DeepFM, DIN, GRU4Rec, SIM.

Own compact PyTorch implementations over one shared feature encoder (features.py):
the maintained libraries were checked with `pip install --dry-run` beside the pinned
stack -- RecBole 1.2.1 would downgrade ray 2.60 to 2.6.3, FuxiCTR 2.3.10's wheel ships
no model zoo (DIN/SIM live in its repository only), torch-rechub 0.9.0 has no SIM and
its GRU4Rec is a two-tower matching model, not a CTR scorer.
"""
