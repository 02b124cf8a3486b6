"""Rollout plumbing on a real (tiny) model: left padding, position ids, recomputed log-probs, prompt order."""

from __future__ import annotations

import torch

from llmforge.config.schema import ModelConfig
from llmforge.data.chat import encode_prompt
from llmforge.inference import stops_of
from llmforge.registry import load_model
from llmforge.rl.core import left_pad, logprobs_of, position_ids, response_mask
from llmforge.rl.models import response_logprobs
from llmforge.rl.trainer import prompts_for_step


def test_recomputed_logprobs_equal_the_samplers_at_the_same_temperature_despite_left_padding():
    torch.manual_seed(0)
    loaded = load_model(ModelConfig(name="tiny-llama"))
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    prompts = [encode_prompt(tokenizer, [{"role": "user", "content": text}])
               for text in ("What is 3 + 4?", "Compute 18 - 5, please, and show it.", "2 + 2 = ?")]
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    assert len({len(p) for p in prompts}) > 1  # the batch really is padded
    stops, temperature = stops_of(loaded), 0.7
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=True,
                         temperature=temperature, top_k=0, top_p=1.0, eos_token_id=stops,
                         pad_token_id=tokenizer.pad_token_id, output_logits=True, return_dict_in_generate=True)
    width = ids.shape[1]
    responses = out.sequences[:, width:]
    rmask, _ = response_mask(responses, stops)
    responses = responses.masked_fill(rmask == 0, tokenizer.pad_token_id)
    full_mask = torch.cat([mask, rmask], dim=1)
    with torch.no_grad():
        logits = model(input_ids=torch.cat([ids, responses], dim=1), attention_mask=full_mask,
                       position_ids=position_ids(full_mask)).logits
    ours = response_logprobs(logits, responses, width, temperature)
    sampler = logprobs_of(torch.stack(out.logits, dim=1) / temperature, responses)
    assert torch.allclose(ours * rmask, sampler * rmask, atol=1e-4)
    # alone, without padding, the shortest prompt gets the same log-probs: positions ignore the padding
    row = min(range(3), key=lambda i: len(prompts[i]))
    alone = torch.tensor([prompts[row] + responses[row][rmask[row].bool()].tolist()])
    with torch.no_grad():
        single = model(input_ids=alone).logits
    solo = response_logprobs(single, responses[row:row + 1, :int(rmask[row].sum())], len(prompts[row]), temperature)
    assert torch.allclose(solo[0], ours[row, :int(rmask[row].sum())], atol=1e-4)


def test_prompt_order_is_a_function_of_the_step_so_resume_needs_no_sampler_state():
    count, per, world = 10, 3, 2
    steps = [[prompts_for_step(count, step, per, rank, world, seed=1) for rank in range(world)]
             for step in range(3)]
    flat = [i for step in steps for rank in step for i in rank]
    assert sorted(flat[:count]) == list(range(count))  # the first pass covers every prompt once
    assert prompts_for_step(count, 2, per, 1, world, seed=1) == prompts_for_step(count, 2, per, 1, world, seed=1)
    assert prompts_for_step(count, 0, per, 0, world, seed=1) != prompts_for_step(count, 0, per, 0, world, seed=2)


def test_dropout_is_off_in_train_mode_after_disable_dropout():
    from llmforge.rl.models import disable_dropout

    torch.manual_seed(0)
    model = load_model(ModelConfig(name="tiny-llama", config_overrides={"attention_dropout": 0.5})).model.train()
    ids = torch.randint(0, 100, (2, 12))
    assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
    disable_dropout(model)
    assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
