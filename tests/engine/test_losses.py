"""The chunked next-token loss against the plain one: the same loss (relative difference <= 1e-5) and gradients,
at a vocabulary wider than one tile so the tiling is exercised."""

from __future__ import annotations

import copy

import torch
from transformers import AutoConfig, AutoModelForCausalLM

VOCAB = 70_000  # three tiles of 32,768 columns


def tiny_model(vocab: int = VOCAB) -> AutoModelForCausalLM:
    torch.manual_seed(0)
    config = AutoConfig.for_model("llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab,
                                  tie_word_embeddings=True, attention_dropout=0.0)
    return AutoModelForCausalLM.from_config(config).train()


def batch(vocab: int = VOCAB) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (3, 40), generator=generator)
    labels = ids.clone()
    labels[0, :10] = -100  # a masked prompt
    labels[2, 30:] = -100  # padding
    return {"input_ids": ids, "labels": labels}


def test_the_chunked_loss_and_gradients_equal_the_plain_loss():
    from llmforge.kernels.vocab import NextTokenLoss

    plain, chunked = tiny_model(), tiny_model()
    inputs = batch()
    expected = plain(**inputs).loss
    got = NextTokenLoss(chunked)(chunked, inputs)
    assert abs(got.item() - expected.item()) / expected.item() <= 1e-5
    expected.backward()
    got.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), chunked.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-7), name


def test_the_chunked_kernel_against_hand_rolled_log_softmax_with_entropy_and_bias(monkeypatch):
    """Several chunks (a chunk of 100 logits: 1 row at a time), a bias, a temperature, and the gradients of
    log-probs and entropy together, against autograd through the whole logits."""
    import llmforge.kernels.vocab as vocab

    monkeypatch.setattr(vocab, "CHUNK_LOGITS", 100)
    torch.manual_seed(4)
    hidden = torch.randn(7, 5, requires_grad=True)
    weight, bias = torch.randn(50, 5, requires_grad=True), torch.randn(50, requires_grad=True)
    targets = torch.randint(0, 50, (7,))
    a, b = torch.randn(7), torch.randn(7)
    logits = (hidden @ weight.t() + bias) / 0.7
    log_p = torch.log_softmax(logits, -1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    ((log_p.gather(1, targets[:, None]).squeeze(1) * a).sum() + (entropy * b).sum()).backward()
    expected = [t.grad.clone() for t in (hidden, weight, bias)]
    for t in (hidden, weight, bias):
        t.grad = None
    got_log_p, got_entropy = vocab.ChunkedLogProbs.apply(hidden, weight, bias, targets, 1 / 0.7, True)
    assert torch.allclose(got_log_p, log_p.gather(1, targets[:, None]).squeeze(1), atol=1e-5)
    assert torch.allclose(got_entropy, entropy, atol=1e-5)
    ((got_log_p * a).sum() + (got_entropy * b).sum()).backward()
    for want, tensor in zip(expected, (hidden, weight, bias), strict=True):
        assert torch.allclose(tensor.grad, want, atol=1e-5)


def test_the_pretrain_trainer_computes_the_fused_loss_with_trainers_token_counting(tmp_path):
    """ChunkedLossTrainer hands the fused forward to Trainer.compute_loss, which divides by the tokens of the
    whole accumulated batch (num_items_in_batch) exactly as for the model's own loss."""
    from transformers import Trainer, TrainingArguments

    from llmforge.engine.losses import ChunkedLossTrainer

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    inputs = batch()
    items = torch.tensor(int((inputs["labels"][:, 1:] != -100).sum()) * 2)  # as if half of two micro-batches
    plain = Trainer(model=tiny_model(), args=args).compute_loss(tiny_model(), dict(inputs), num_items_in_batch=items)
    chunked_trainer = ChunkedLossTrainer(model=tiny_model(), args=args)
    chunked = chunked_trainer.compute_loss(chunked_trainer.model, dict(inputs), num_items_in_batch=items)
    assert abs(chunked.item() - plain.item()) / plain.item() <= 1e-5


def test_response_logprobs_chunked_and_whole_agree_with_the_reference_definition():
    """PPO's scoring at the response positions only, chunked or not, against log-softmax of the whole logits."""
    from llmforge.kernels.vocab import causal_parts
    from llmforge.rl.logprobs import response_hidden, token_logprobs
    from llmforge.rl.models import response_entropy, response_logprobs

    model = tiny_model()
    ids = torch.randint(0, VOCAB, (2, 30), generator=torch.Generator().manual_seed(2))
    width = 18  # prompt positions, then 12 response tokens
    responses = ids[:, width:]
    mask = torch.ones_like(responses)
    mask[1, 8:] = 0  # stopped early
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "position_ids": torch.arange(30).expand(2, 30)}
    logits = model(**inputs).logits
    expected = response_logprobs(logits, responses, width, 0.7) * mask
    entropy = response_entropy(logits, width, 0.7) * mask
    backbone, head, config = causal_parts(model)
    for chunked in (True, False):
        hidden = response_hidden(backbone, inputs, width)
        got, got_entropy = token_logprobs(hidden, head, config, responses, mask, 0.7, chunked, with_entropy=True)
        assert torch.allclose(got, expected, atol=1e-5), chunked
        assert torch.allclose(got_entropy, entropy, atol=1e-4), chunked


def test_response_logprob_gradients_match_the_whole_logits():
    from llmforge.kernels.vocab import causal_parts
    from llmforge.rl.logprobs import response_hidden, token_logprobs
    from llmforge.rl.models import response_logprobs

    reference, model = tiny_model(), tiny_model()
    ids = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(3))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "position_ids": torch.arange(24).expand(2, 24)}
    mask = torch.ones(2, 8)
    (response_logprobs(reference(**inputs).logits, ids[:, 16:], 16, 1.0) * mask).sum().backward()
    backbone, head, config = causal_parts(model)
    token_logprobs(response_hidden(backbone, inputs, 16), head, config, ids[:, 16:], mask, 1.0, True)[0].sum().backward()
    for (name, a), (_, b) in zip(reference.named_parameters(), model.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name


def test_the_full_logits_sft_trainer_uses_the_models_own_loss(tmp_path):
    from datasets import Dataset
    from trl import SFTConfig

    from llmforge.engine.losses import sft_trainer

    model = tiny_model(vocab=256)
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", bf16=False, dataset_num_proc=None)
    rows = Dataset.from_list([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}])
    from llmforge.registry.families import family_for
    from llmforge.registry.tokenizer import tiny_tokenizer

    trainer = sft_trainer(chunked=False)(model=model, args=args, train_dataset=rows,
                                        processing_class=tiny_tokenizer(family_for("llama")))
    inputs = batch(256)
    assert torch.allclose(trainer.compute_loss(model, dict(inputs)), copy.deepcopy(model)(**inputs).loss)
