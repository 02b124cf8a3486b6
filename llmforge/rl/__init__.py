"""Reinforcement learning from rewards: our PPO (core arithmetic, rollout, trainer), sampling engines and the
reward-function registry."""
