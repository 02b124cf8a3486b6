"""Sampling a rollout's completions: padded `generate`, or transformers' continuous batching.

padded: one left-padded batch through `model.generate`, every row stepping until the longest stops.
continuous: each completion is a request to transformers' continuous-batching engine (one per training run,
paged KV cache), which drops finished sequences from the batch as it goes; its seed is drawn from torch's
global generator, so a resumed run samples the same completions. Either way the rollout recomputes the
log-probs with the same forward the update uses, and tests check the continuous engine's own log-probs
against that recomputation.

`ppo.generation: auto` picks, from measurements written down here (`llmforge bench --only online`,
16 prompts x 4 samples x 32 tokens):
- CPU: padded. PPO ran 93.2 completions/s padded and 29.0 continuous (0.31x) on a 2-core Xeon, 99.7 and
  41.5 (0.42x) on a 2-core AMD EPYC (tiny model, float32), with one engine kept for the run (0.11x when each
  rollout started its own). A rollout's requests all fit in one batch, so both take one forward per token,
  and a continuous step costs more on a CPU: its attention is SDPA over every query of the batch against
  every cached key of the batch under a mask (growing with the square of the batch), plus the scheduler's
  Python. Sampling alone on the EPYC: 195-223 completions/s padded against 89-100, and 177-205 against
  87-109 on one thread (so not the engine's thread competing with the trainer's); with a trained policy
  that stops after 2-7 tokens, 900-1,360 against 250-510 (padded `generate` stops when its last row does).
- GPU: continuous where the strategy allows (below); not yet measured on a GPU.
- sharded strategies (FSDP, ZeRO-3) always use padded: the continuous engine runs the module it is given,
  not the gathered parameters.
"""

from __future__ import annotations

from typing import Any

import torch

from llmforge.rl.core import left_pad

ENGINES = ("padded", "continuous")


def choose_engine(setting: str, device: str, strategy: str) -> str:
    if setting != "auto":
        return setting
    if strategy in ("fsdp", "deepspeed"):
        return "padded"
    return "padded" if device == "cpu" else "continuous"


def sample_padded(policy: Any, prompts: list[list[int]], pad_id: int, max_new_tokens: int, temperature: float,
                  top_p: float, stop_ids: list[int]) -> torch.Tensor:
    """[B, T] sampled tokens after each (left-padded) prompt; rows that stopped early are padded."""
    device = next(policy.parameters()).device
    ids, mask = left_pad(prompts, pad_id)
    out = policy.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                          do_sample=True, temperature=temperature, top_p=top_p, top_k=0, use_cache=True,
                          eos_token_id=stop_ids, pad_token_id=pad_id)
    return out[:, ids.shape[1]:]


class ContinuousSampler:
    """One continuous-batching engine for a whole training run: created at the first rollout, kept running
    between rollouts (its background thread waits for requests), stopped by `close`. Starting and stopping one
    per rollout cost more than the sampling on a CPU (allocating the paged cache, starting the thread, and two
    full garbage collections on the way out). The cache is sized for one rollout (every request at its longest),
    not from free device memory, so the update that follows keeps its memory. The policy's weights are read
    where they live, so the engine samples from the weights each update leaves."""

    def __init__(self, requests: int, longest_prompt: int, max_new_tokens: int, temperature: float, top_p: float,
                 stop_ids: list[int], pad_id: int, logprobs: bool = False) -> None:
        from transformers import ContinuousBatchingConfig, GenerationConfig

        self.requests, self.pad_id = requests, pad_id
        self.generation = GenerationConfig(do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                                           max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=pad_id)
        page = ContinuousBatchingConfig().page_size
        per_request = -(-(longest_prompt + max_new_tokens) // page)
        self.engine = ContinuousBatchingConfig(
            return_logprobs=logprobs, max_queue_size=0, max_requests_per_batch=requests,
            num_blocks=requests * per_request + 1, max_batch_tokens=max(requests, min(requests * longest_prompt, 8192)))
        self.manager: Any = None
        self.model: Any = None

    def sample(self, policy: Any, prompts: list[list[int]]) -> tuple[torch.Tensor, list[list[float]]]:
        """([B, T] sampled tokens right-padded with pad_id, each row's sampler log-probs). The seed is drawn
        from torch's global generator, so a resumed run samples the same completions."""
        model = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        if self.manager is None or model is not self.model:
            self.close()
            self.engine.seed = seed  # the engine seeds torch's generator with it as it starts
            self.manager, self.model = model.init_continuous_batching(generation_config=self.generation,
                                                                      continuous_batching_config=self.engine), model
            self.manager.start()
        torch.manual_seed(seed)  # its sampling thread draws from torch's global generator
        results = {}
        for start in range(0, len(prompts), self.requests):
            ids = self.manager.add_requests(prompts[start:start + self.requests])
            waiting = {request: start + offset for offset, request in enumerate(ids)}  # request id -> row
            while waiting:
                result = self.manager.get_result(timeout=600)
                if result is None:
                    self.close()
                    raise RuntimeError("continuous batching stopped without a completion (its error is in the log "
                                       "above) or gave none in 600 s")
                if result.request_id in waiting:
                    results[waiting.pop(result.request_id)] = result
        ordered = [results[i] for i in range(len(prompts))]
        errors = [r.error for r in ordered if r.error]
        if errors:
            raise RuntimeError(f"continuous batching failed: {errors[0]}")
        width = max((len(r.generated_tokens) for r in ordered), default=0)
        tokens = torch.full((len(ordered), max(width, 1)), self.pad_id, dtype=torch.long)
        for row, result in enumerate(ordered):
            tokens[row, :len(result.generated_tokens)] = torch.tensor(result.generated_tokens, dtype=torch.long)
        device = next(policy.parameters()).device
        return tokens.to(device), [list(r.logprobs or []) for r in ordered]

    def close(self) -> None:
        if self.manager is not None:
            manager, self.manager, self.model = self.manager, None, None
            manager.stop(block=True, timeout=30)


def sample_continuous(policy: Any, prompts: list[list[int]], pad_id: int, max_new_tokens: int, temperature: float,
                      top_p: float, stop_ids: list[int], logprobs: bool = False,
                      ) -> tuple[torch.Tensor, list[list[float]]]:
    """One batch through a continuous-batching engine started for it and stopped after."""
    sampler = ContinuousSampler(len(prompts), max(map(len, prompts)), max_new_tokens, temperature, top_p, stop_ids,
                                pad_id, logprobs)
    try:
        return sampler.sample(policy, prompts)
    finally:
        sampler.close()


