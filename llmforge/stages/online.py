"""What the online stages (grpo, ppo) share: what they reward, how they sample, and the checks on both."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from llmforge.config.schema import PROMPT_FORMATS, RunConfig, Section
from llmforge.errors import UserError
from llmforge.rl.reward_functions import REWARD_FUNCTIONS, RewardSource, resolve


class RewardSources(Section):
    """What an online stage rewards: a trained reward model and/or verifiable functions."""

    reward_model: str | None = Field(None, description="a reward model (an rm run or HF folder) scoring completions")
    reward_functions: list[str] = Field(
        default_factory=list, description="reward functions: built-in (" + ", ".join(REWARD_FUNCTIONS) + "), your own "
        "as path/to/file.py:function or package.module:function (imported because the recipe names it)")
    reward_url: str | None = Field(
        None, description="a scoring service: POST {prompts, completions, columns...} as JSON, answer a list of floats")
    reward_timeout: float = Field(30.0, gt=0, description="seconds to wait for the reward service per batch")
    reward_retries: int = Field(2, ge=0, description="tries again after a reward service fails, with back-off")
    reward_weights: list[float] | None = Field(
        None, description="weights of [reward_model, *reward_functions, reward_url] in that order; default all 1")
    max_new_tokens: int = Field(64, ge=1, description="longest completion")
    generation: Literal["auto", "padded", "continuous"] = Field(
        "auto", description="how completions are sampled: padded generate() batches, or transformers' continuous "
        "batching; auto = the faster on this device (rl/sampling.py)")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling")

    @field_validator("reward_functions")
    @classmethod
    def _loadable(cls, names: list[str]) -> list[str]:
        for name in names:  # imports your functions and checks their signatures now, before anything loads
            try:
                resolve(name)
            except UserError as exc:
                raise ValueError(str(exc)) from None
        return names

    @field_validator("reward_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"'{url}' is not an http(s) URL")
        return url

    def sources(self) -> list[RewardSource]:
        """The reward functions and the service, in reward_weights order (after the reward model)."""
        found = [resolve(name, self.reward_timeout, self.reward_retries) for name in self.reward_functions]
        if self.reward_url:
            found.append(resolve(self.reward_url, self.reward_timeout, self.reward_retries))
        return found


def check_columns(section: str, sources: list[RewardSource], columns: list[str]) -> None:
    """Every column a reward function requires is in the prompt rows."""
    for source in sources:
        missing = [c for c in source.needs if c not in columns]
        if missing:
            raise UserError(f"{section}.reward_functions: '{source.name}' needs the column(s) {', '.join(missing)}, "
                            f"which the training prompts do not have (they have: {', '.join(columns)}). Use prompt "
                            "rows that carry it (the built-in arithmetic-prompts have `answer`), or map yours with "
                            "columns: {" + missing[0] + ": yours}.")


def check_rewards(cfg: RunConfig) -> None:
    """An online stage needs something to reward, one weight per source, and trains full or LoRA weights."""
    section, options = cfg.stage, cfg.options()
    if not options.reward_model and not options.reward_functions and not options.reward_url:
        raise ValueError(f"stage {section} needs something to reward: set {section}.reward_model (an rm run), "
                         f"{section}.reward_functions (" + ", ".join(REWARD_FUNCTIONS) + ", or your own) and/or "
                         f"{section}.reward_url")
    sources = int(bool(options.reward_model)) + len(options.reward_functions) + int(bool(options.reward_url))
    if options.reward_weights is not None and len(options.reward_weights) != sources:
        raise ValueError(f"{section}.reward_weights has {len(options.reward_weights)} weights for {sources} "
                         "rewards (reward_model first, then reward_functions, then reward_url)")
    if cfg.adapter.type == "freeze":
        raise ValueError(f"adapter.type=freeze is not offered for {section}; use none (full) or lora")


def prompts_within(cfg: RunConfig, tokenizer: Any) -> tuple[Any, list[dict], dict[str, Any], int]:
    """(prompt rows with their token ids, held-out prompts, fingerprints, prompts left out): every prompt that
    leaves room for max_new_tokens within data.max_length, so a sequence never outgrows what the memory plan
    counted."""
    from llmforge.data.chat import encode_prompt
    from llmforge.data.preference import prepare_prompt_data

    section, options = cfg.stage, cfg.options()
    prompts, accuracy, fingerprints = prepare_prompt_data(cfg.data, section)
    check_columns(section, options.sources(), [c for c in prompts.column_names if c != "prompt"])
    limit = cfg.data.max_length - options.max_new_tokens
    encoded = prompts.map(lambda row: {"prompt_ids": encode_prompt(tokenizer, row["prompt"])})
    kept = encoded.filter(lambda row: 0 < len(row["prompt_ids"]) <= limit)
    if len(kept) == 0:
        raise UserError(f"data.train: every prompt is longer than data.max_length - {section}.max_new_tokens = "
                        f"{limit} tokens. Raise data.max_length or lower {section}.max_new_tokens.")
    return kept, accuracy, fingerprints, len(encoded) - len(kept)


def reward_model_of(cfg: RunConfig) -> str | None:
    return cfg.options().reward_model


# what grpo and ppo read (their own section aside)
ONLINE_KEYS = ("adapter", "data.train", "data.eval", "data.max_length")


def online_spec() -> dict[str, Any]:
    """What grpo and ppo declare alike: prompt rows in, rewarded by reward_model_of, judged in a pipeline by held-out
    accuracy and their logged reward and KL, against the model they started from."""
    return {"formats": PROMPT_FORMATS, "headline": ("eval_accuracy",), "logged_headline": ("reward", "kl"),
            "compared_with_start": True, "reward_model": reward_model_of}
