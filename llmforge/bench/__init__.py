"""Measured speed and memory per stage, side by side with plain TRL/transformers and the device's ceiling."""

GROUPS = ("stages", "features", "overhead", "scaling", "online", "serve", "curate", "sizes")  # what `--only` takes
DEFAULT_GROUPS = GROUPS[:-1]  # sizes (about an hour on 2 cores) runs when asked for
