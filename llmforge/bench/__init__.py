"""Measured speed and memory per stage, side by side with plain TRL/transformers and the device's ceiling."""

GROUPS = ("stages", "features", "overhead", "scaling", "online", "serve", "curate")  # what `--only` chooses from
