"""Reinforcement learning from rewards: verifiable reward functions now, our own PPO next."""
