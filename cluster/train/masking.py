"""BERT masked-LM corruption: pick `probability` of the non-special tokens; of those 80% → [MASK],
10% → a random token, 10% unchanged (Devlin et al. 2019, as `DataCollatorForLanguageModeling`).

Pure torch with an explicit generator, so a checkpoint can restore the exact masking stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

IGNORE_INDEX = -100  # cross-entropy's ignore_index: positions that are not predicted


def mask_tokens(
    input_ids: Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    probability: float,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Return `(corrupted_ids, labels)`, both shaped like `input_ids` (B, T).

    labels hold the original id where a token was selected and -100 elsewhere; special tokens (pad, cls, sep,
    mask) are never selected. Random numbers are drawn on the generator's device, then moved to the ids'.
    """
    shape, gdev = input_ids.shape, generator.device
    rand = lambda: torch.rand(shape, generator=generator, device=gdev).to(input_ids.device)  # noqa: E731
    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=input_ids.dtype, device=input_ids.device))
    selected = (rand() < probability) & ~special
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))

    draw = rand()  # one uniform draw splits the selected tokens 80 / 10 / 10
    to_mask = selected & (draw < 0.8)
    to_random = selected & (draw >= 0.8) & (draw < 0.9)
    random_ids = torch.randint(0, vocab_size, shape, generator=generator, device=gdev).to(input_ids.device)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    corrupted = torch.where(to_random, random_ids.to(input_ids.dtype), corrupted)
    return corrupted, labels
