"""Offline evaluation of the CTR scorers: metrics (AUC, log loss, ...) and reports."""
