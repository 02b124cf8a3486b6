"""Compute kernels below every layer: the chunked log-probabilities over a vocabulary (vocab.py)."""
