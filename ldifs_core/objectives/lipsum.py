"""`lipsum`: Lipsum-FT (Nam et al., ICLR 2024), CE + λ times the gap between the tuned and θ₀'s similarities
to random texts."""
from __future__ import annotations

from ldifs_core.errors import BadConfig
from ldifs_core.objectives.base import Batch, F, ToFrozenModel, TrainingSetup, torch
from ldifs_core.settings import option


class Lipsum(ToFrozenModel):
    """Lipsum-FT: v(x) holds the (θ₀-scaled) similarities between the image features and the frozen text
    tower's features of M random token sequences, drawn afresh every step; the regulariser is
    (1/2M)·‖v_θ(x) − v_θ₀(x)‖², averaged over the batch."""

    name = "lipsum"
    summary = "CE + λ·(1/2M)‖v_θ(x) − v_θ₀(x)‖²: similarities to M random texts stay as θ₀'s (Lipsum-FT)"
    label = "Lipsum-FT — CE + λ·random-text similarity gap"
    order = 8
    default_lam = 0.3
    options = (
        option("lipsum_texts", int, 80, help="M random texts per step", least=1, most=4096,
               what="lipsum_texts (M)", hint="try 80", label="Random texts per step (M)"),
        option("lipsum_length", int, 8, help="tokens per random text", least=1, most=75, hint="try 8",
               label="Tokens per random text"),
    )
    color, symbol = "#bcbd22", "pentagon"

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        cfg, clip, tokenizer = setup.cfg, setup.base.clip, setup.base.tokenizer
        if cfg.lipsum_length + 2 > clip.context_length:
            raise BadConfig(f"lipsum_length {cfg.lipsum_length} does not fit this model's text context of "
                            f"{clip.context_length} tokens (start and end included): use at most "
                            f"{clip.context_length - 2}.")
        self.start, self.end = tokenizer.sot_token_id, tokenizer.eot_token_id
        self.texts, self.length, self.context = cfg.lipsum_texts, cfg.lipsum_length, clip.context_length

    def random_tokens(self) -> torch.Tensor:
        """[M, context] token ids: start, `length` random word pieces (never a special token), end, padding."""
        tokens = torch.zeros(self.texts, self.context, dtype=torch.long)
        tokens[:, 0] = self.start
        tokens[:, 1:self.length + 1] = torch.randint(1, min(self.start, self.end), (self.texts, self.length),
                                                     generator=self.generator)
        tokens[:, self.length + 1] = self.end
        return tokens

    def regulariser(self, batch: Batch, tuned_features: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            text = F.normalize(self.setup.base.clip.encode_text(self.random_tokens().to(batch.images.device)), dim=-1)
        text = text.clone()
        v_tuned = self.logit_scale * F.normalize(tuned_features, dim=-1) @ text.T
        v_frozen = self.logit_scale * self.frozen_features(batch.images) @ text.T
        return (v_tuned.float() - v_frozen.float()).pow(2).sum(dim=1).mean() / (2 * self.texts)


OBJECTIVE = Lipsum
