"""Scaling out: process state, strategy arguments (DDP/FSDP/DeepSpeed), launcher, SLURM."""
