"""The world's teacher: a small BertForMaskedLM pretrained with MLM on the corpus until it has learned the planted
occupation-gender association (its planted Spearman), not merely until the loss flattens."""

from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM

from study.config import BiasConfig, MaskingConfig, OptimConfig, WorldConfig
from study.distill.data import pad, plan_masking, selection_weights, tokenize
from study.distill.optim import clipped_step, make_optimizer
from study.metrics import bias

log = logging.getLogger(__name__)



def pretrain_teacher(cfg: WorldConfig, sentences: list[str], tokenizer) -> tuple[BertForMaskedLM, list[dict]]:
    """MLM pretraining until the planted Spearman reaches cfg.target_spearman (after min_epochs) or max_epochs."""
    torch.manual_seed(cfg.seed)
    model = BertForMaskedLM(BertConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, intermediate_size=cfg.intermediate, max_position_embeddings=cfg.max_length,
        pad_token_id=tokenizer.pad_token_id, initializer_range=cfg.init_range, hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
    ))
    corpus = tokenize(sentences, tokenizer, cfg.max_length)
    masking = MaskingConfig()
    weights = selection_weights(corpus, len(tokenizer), tokenizer.all_special_ids, masking)
    steps_per_epoch = len(corpus) // cfg.batch_size
    optim = OptimConfig(lr=cfg.lr)  # DistilBERT's AdamW, warmup and clip, at the world's learning rate
    optimizer, scheduler = make_optimizer(model, optim, cfg.max_epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(cfg.seed)
    history, start = [], time.time()
    for epoch in range(cfg.max_epochs):
        model.train()
        order = torch.randperm(len(corpus), generator=generator).tolist()
        total = 0.0
        for step in range(steps_per_epoch):
            batch = [corpus[i] for i in order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
            ids, attn = pad(batch, tokenizer.pad_token_id)
            masked, labels = plan_masking(ids, weights, masking, tokenizer.mask_token_id, generator).apply(ids)
            # The MLM head only at the masked positions: the same loss as labels=..., at ~60% of the compute.
            hidden = model.bert(input_ids=masked, attention_mask=attn).last_hidden_state  # (B, L, H)
            target = labels != -100
            loss = F.cross_entropy(model.cls(hidden[target]), labels[target])
            loss.backward()
            clipped_step(model, optimizer, scheduler, optim.clip)
            total += loss.item()
        scalars, _ = bias.measure(model, tokenizer, BiasConfig())
        rho = scalars["bias/template/planted_spearman"]
        history.append({"epoch": epoch + 1, "mlm_loss": total / steps_per_epoch, "planted_spearman": rho,
                        "seconds": round(time.time() - start, 1)})
        log.info(f"  teacher epoch {epoch + 1}/{cfg.max_epochs}: mlm loss {total / steps_per_epoch:.3f}, "
            f"planted rho {rho:.3f} ({time.time() - start:.0f}s)")
        if epoch + 1 >= cfg.min_epochs and rho >= cfg.target_spearman:
            break
    model.eval()
    return model, history

