"""Fine-tuning objectives. Each builds itself from a `TrainingSetup`, turns a batch into (total loss, named
parts) for the one training loop, and owns its classifier head: where it starts, what it ends as, and how a
WiSE-FT weight mix classifies.

All but FLYP train the image tower end to end with a linear head on its normalised features; FLYP trains both
towers contrastively against the class prompts, as in Goyal et al. (2023), and classifies with its own text tower.
The comparison bench adds label smoothing (`ls`), FLYP with cross-entropy over the class prompts (`flyp_ce`),
low-rank adapters (`lora`), Lipsum-FT (`lipsum`) and ZSCL's distillation on reference images (`zscl`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ldifs_core.config import ZSCL_BANK, RunConfig
from ldifs_core.datasets import ImageSet, available_bank, load_split
from ldifs_core.encoding import autocast_for, encode_images, model_inputs, zero_shot_head
from ldifs_core.errors import BadConfig, DatasetUnavailable
from ldifs_core.ldifs import distance_from_taps, forward_with_taps
from ldifs_core.lora import add_adapters, merge_adapters
from ldifs_core.models import FoundationModel
from ldifs_core.probe import fit_linear_probe


class TunedClassifier(nn.Module):
    """Image tower + linear head on L2-normalised features (the zero-shot head is such a layer)."""

    def __init__(self, visual: nn.Module, head: nn.Linear):
        super().__init__()
        self.visual = visual
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(F.normalize(self.visual(images), dim=-1))


@dataclass
class Batch:
    images: torch.Tensor  # model input, float [B, 3, S, S]
    labels: torch.Tensor
    indices: torch.Tensor  # positions in the training pool (for precomputed frozen features)


@dataclass
class TrainingSetup:
    """What an objective builds itself from."""

    cfg: RunConfig
    base: FoundationModel  # what the run is anchored to (θ₀, or a stage's start weights): frozen, on its device
    tuned: nn.Module  # the run's CLIP being tuned (a copy of base.clip)
    head: nn.Linear  # the classifier head, already initialised by `initial_head`
    train: ImageSet
    device: torch.device


def text_head(model: FoundationModel, data: ImageSet) -> nn.Linear:
    """A frozen head from `model`'s text tower: class embeddings times its logit scale (CLIP's zero-shot head)."""
    weight = zero_shot_head(model, data.class_names, data.templates) * model.clip.logit_scale.exp().item()
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.zero_()
    return head.requires_grad_(False)


def probe_head(cfg: RunConfig, model: FoundationModel, data: ImageSet) -> nn.Linear:
    """A linear probe fitted on θ₀'s features of a per-class subset of the training pool."""
    pool = data.per_class_subset(cfg.probe_limit, cfg.probe_cap, cfg.seed)
    features = encode_images(model.clip.visual, pool.images, model)
    probe = fit_linear_probe(features, pool.labels, data.num_classes, seed=cfg.seed)
    head = nn.Linear(features.shape[1], data.num_classes)
    with torch.no_grad():
        head.weight.copy_(probe.weight)
        head.bias.copy_(probe.bias)
    return head


def multi_positive_cross_entropy(logits: torch.Tensor, row_groups: torch.Tensor,
                                 column_groups: torch.Tensor) -> torch.Tensor:
    """Cross-entropy where every column of the row's group is a positive (images of one class share a caption)."""
    same = (row_groups[:, None] == column_groups[None, :]).float()
    return torch.sum(-same / same.sum(dim=1, keepdim=True) * F.log_softmax(logits, dim=1), dim=1).mean()


class Objective:
    """Cross-entropy on the head's logits; subclasses add a regulariser or change what trains."""

    name = "ce"
    trains_text = False
    freezes_encoder = False

    def __init__(self, setup: TrainingSetup):
        self.setup = setup
        self.classifier = TunedClassifier(setup.tuned.visual, setup.head)
        self.lam = setup.cfg.effective_lam

    @classmethod
    def initial_head(cls, cfg: RunConfig, base: FoundationModel, train: ImageSet) -> nn.Linear:
        """ZS-init: the text tower's class embeddings times CLIP's logit scale; LP-init: a fitted linear probe."""
        head = text_head(base, train).requires_grad_(True) if cfg.init == "zs" else probe_head(cfg, base, train)
        return head.to(base.clip.logit_scale.device)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(self.classifier(batch.images), batch.labels)
        return ce, {"ce": ce.detach()}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimiser updates: the head, the image tower unless frozen, the text tower if it trains."""
        clip = self.setup.tuned
        params = list(self.setup.head.parameters())
        if not self.freezes_encoder:
            params += list(clip.visual.parameters())
        if self.trains_text:
            params += [p for name, p in clip.named_parameters()
                       if not name.startswith("visual.") and name != "logit_scale"]
        return params

    def finalise(self) -> None:
        """After the last step: leave `setup.tuned` an ordinary CLIP (LoRA merges its adapters here)."""

    def final_head(self) -> nn.Linear:
        """The head the tuned model classifies its task with (on the CPU, frozen)."""
        return self.setup.head.cpu().eval().requires_grad_(False)

    @classmethod
    def mixed_head(cls, base: FoundationModel, mixed_clip: nn.Module, initial: nn.Linear, final: nn.Linear,
                   alpha: float, task: ImageSet) -> nn.Linear:
        """WiSE-FT's head for weights (1 − α)·θ₀ + α·θ: the heads are mixed like the weights."""
        head = nn.Linear(final.in_features, final.out_features)
        with torch.no_grad():
            head.weight.copy_(torch.lerp(initial.weight, final.weight, alpha))
            head.bias.copy_(torch.lerp(initial.bias, final.bias, alpha))
        return head.requires_grad_(False)


class LinearProbeOnly(Objective):
    """Head only, frozen encoder: the no-forgetting reference. It always starts from the fitted probe."""

    name = "lp"
    freezes_encoder = True

    @classmethod
    def initial_head(cls, cfg: RunConfig, base: FoundationModel, train: ImageSet) -> nn.Linear:
        return probe_head(cfg, base, train).to(base.clip.logit_scale.device)


class LDIFS(Objective):
    """CE + λ · LDIFS between the frozen pre-trained tower and the tuned one, on the same batch."""

    name = "ldifs"

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        self.frozen_visual = setup.base.clip.visual
        self.taps = setup.cfg.ldifs_taps
        self.variant = setup.cfg.ldifs_variant
        # Per-layer [N, P, C] features of the whole pool; config validation keeps this away from augmentation.
        self.frozen_cache = self.precompute_frozen_taps() if setup.cfg.precompute_frozen else None

    @torch.no_grad()
    def precompute_frozen_taps(self, batch_size: int = 512) -> list[torch.Tensor]:
        """θ₀'s tapped features for the whole pool (fp16), so each step skips the frozen forward pass."""
        base, train, device = self.setup.base, self.setup.train, self.setup.device
        layers: list[list[torch.Tensor]] = []
        for start in range(0, len(train), batch_size):
            with autocast_for(device):
                taps = forward_with_taps(self.frozen_visual, model_inputs(base, train.images[start:start + batch_size],
                                                                          device), self.taps)[1]
            if not layers:
                layers = [[] for _ in taps]
            for chunks, tap in zip(layers, taps):
                chunks.append(tap.to(torch.float16))
        return [torch.cat(chunks) for chunks in layers]

    def frozen_taps(self, batch: Batch) -> list[torch.Tensor]:
        if self.frozen_cache is not None:
            return [layer[batch.indices.to(layer.device)] for layer in self.frozen_cache]
        with torch.inference_mode():
            taps = forward_with_taps(self.frozen_visual, batch.images, self.taps)[1]
        return [tap.clone() for tap in taps]  # plain tensors again, so autograd may use them

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pooled, tuned = forward_with_taps(self.classifier.visual, batch.images, self.taps)
        ce = F.cross_entropy(self.classifier.head(F.normalize(pooled, dim=-1)), batch.labels)
        reg = self.lam * distance_from_taps(self.frozen_taps(batch), tuned, self.variant).mean()
        return ce + reg, {"ce": ce.detach(), "ldifs": reg.detach()}


class L2SP(Objective):
    """CE + λ · ||θ − θ₀||² over the image tower's weights (Li et al., 2018)."""

    name = "l2sp"

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        self.anchors = [p.detach() for p in setup.base.clip.visual.parameters()]

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(self.classifier(batch.images), batch.labels)
        drift = sum((p - p0).pow(2).sum() for p, p0 in zip(self.classifier.visual.parameters(), self.anchors))
        reg = self.lam * drift
        return ce + reg, {"ce": ce.detach(), "l2sp": reg.detach()}


class FLYP(Objective):
    """CLIP's contrastive loss between images and a prompt of their class; both towers train."""

    name = "flyp"
    trains_text = True

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        train = setup.train
        prompts = [t.format(c) for c in train.class_names for t in train.templates]
        self.prompt_tokens = setup.base.tokenizer(prompts).view(train.num_classes, len(train.templates), -1)
        self.rng = random.Random(setup.cfg.seed)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clip = self.setup.tuned
        templates = self.prompt_tokens.shape[1]
        picks = torch.tensor([self.rng.randrange(templates) for _ in range(len(batch.labels))])
        tokens = self.prompt_tokens[batch.labels.cpu(), picks].to(batch.images.device)
        image = F.normalize(self.classifier.visual(batch.images), dim=-1)
        text = F.normalize(clip.encode_text(tokens), dim=-1)
        logits = clip.logit_scale.exp().clamp(max=100) * image @ text.T
        contrastive = 0.5 * (multi_positive_cross_entropy(logits, batch.labels, batch.labels)
                             + multi_positive_cross_entropy(logits.T, batch.labels, batch.labels))
        return contrastive, {"contrastive": contrastive.detach()}

    def final_head(self) -> nn.Linear:
        """FLYP classifies with its own tuned text tower's class embeddings."""
        return text_head(self.setup.base.with_clip(self.setup.tuned), self.setup.train).cpu().eval()

    @classmethod
    def mixed_head(cls, base: FoundationModel, mixed_clip: nn.Module, initial: nn.Linear, final: nn.Linear,
                   alpha: float, task: ImageSet) -> nn.Linear:
        """The mixed text tower's own class embeddings: a text-derived head is recomputed, not interpolated."""
        return text_head(base.with_clip(mixed_clip), task).cpu().eval()


# -- the comparison bench -------------------------------------------------------------------------------


class LabelSmoothing(Objective):
    """Cross-entropy against labels smoothed by ε (cfg.ls_factor): ε = 0 is `ce`."""

    name = "ls"

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(self.classifier(batch.images), batch.labels, label_smoothing=self.setup.cfg.ls_factor)
        return ce, {"ce": ce.detach()}


class FLYPCrossEntropy(FLYP):
    """Both towers train; the logits are CLIP's similarities to one prompt per class (a template sampled per
    class per step), and cross-entropy runs over the classes, as in the authors' released FLYP variant."""

    name = "flyp_ce"

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clip = self.setup.tuned
        classes, templates = self.prompt_tokens.shape[:2]
        picks = torch.tensor([self.rng.randrange(templates) for _ in range(classes)])
        tokens = self.prompt_tokens[torch.arange(classes), picks].to(batch.images.device)
        image = F.normalize(self.classifier.visual(batch.images), dim=-1)
        text = F.normalize(clip.encode_text(tokens), dim=-1)
        ce = F.cross_entropy(clip.logit_scale.exp().clamp(max=100) * image @ text.T, batch.labels)
        return ce, {"ce": ce.detach()}


class LoRA(Objective):
    """Only low-rank adapters on the image tower (see lora.py) and the head train; merged after the last step."""

    name = "lora"

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        cfg = setup.cfg
        self.adapters = add_adapters(setup.tuned.visual, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.seed)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.setup.head.parameters()) + [p for adapter in self.adapters for p in adapter.parameters()]

    def finalise(self) -> None:
        merge_adapters(self.setup.tuned.visual)


class ToFrozenModel(Objective):
    """CE + λ · a distance between the tuned and the frozen θ₀ tower's outputs; subclasses say which."""

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        self.frozen_visual = setup.base.clip.visual
        self.logit_scale = setup.base.clip.logit_scale.exp().item()  # θ₀'s: the scale of its zero-shot logits
        self.generator = torch.Generator().manual_seed(setup.cfg.seed)

    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            features = F.normalize(self.frozen_visual(images), dim=-1)
        return features.clone()

    def regulariser(self, batch: Batch, tuned_features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        features = self.classifier.visual(batch.images)
        ce = F.cross_entropy(self.classifier.head(F.normalize(features, dim=-1)), batch.labels)
        reg = self.lam * self.regulariser(batch, features)
        return ce + reg, {"ce": ce.detach(), self.name: reg.detach()}


class Lipsum(ToFrozenModel):
    """Lipsum-FT (Nam et al., ICLR 2024): v(x) holds the (θ₀-scaled) similarities between the image features and
    the frozen text tower's features of M random token sequences, drawn afresh every step; the regulariser is
    (1/2M)·‖v_θ(x) − v_θ₀(x)‖², averaged over the batch."""

    name = "lipsum"

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


class ZSCL(ToFrozenModel):
    """ZSCL's feature distillation (Zheng et al., ICCV 2023): on a batch of unlabeled reference images from other
    datasets, KL(p_θ₀ ‖ p_θ) between the image-to-caption distributions over a fixed set of captions embedded by
    the original text tower. ZSCL's weight ensemble and text-side loss are not part of this objective."""

    name = "zscl"
    per_reference_dataset = 2000  # reference images kept from each dataset

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        self.reference, captions = self.reference_images_and_captions()
        self.captions = zero_shot_head(setup.base, captions, ["{}"]).to(setup.device).clone()  # a plain tensor for autograd

    def reference_images_and_captions(self) -> tuple[torch.Tensor, list[str]]:
        """uint8 images of the reference sets (train split; never the task) and one caption per class of each set."""
        cfg = self.setup.cfg
        names = ([n for n in available_bank() if n != cfg.dataset] if cfg.zscl_reference == ZSCL_BANK
                 else [cfg.zscl_reference])
        if not names:
            raise DatasetUnavailable("ZSCL needs reference images from a dataset other than the task, and none is "
                                     "available: give a folder of reference images (zscl_reference).")
        sets = [load_split(name, "train", image_size=self.setup.base.image_size).subset(self.per_reference_dataset,
                                                                                        cfg.seed)
                for name in names]
        captions = list(dict.fromkeys(s.templates[0].format(c) for s in sets for c in s.class_names))
        return torch.cat([s.images for s in sets]), captions

    def regulariser(self, batch: Batch, tuned_features: torch.Tensor) -> torch.Tensor:
        pick = torch.randint(len(self.reference), (len(batch.labels),), generator=self.generator)
        images = model_inputs(self.setup.base, self.reference[pick], batch.images.device)
        log_p_frozen = F.log_softmax(self.logit_scale * self.frozen_features(images) @ self.captions.T, dim=1)
        tuned = F.normalize(self.classifier.visual(images), dim=-1)
        log_p_tuned = F.log_softmax(self.logit_scale * tuned.float() @ self.captions.T, dim=1)
        return F.kl_div(log_p_tuned, log_p_frozen.float(), log_target=True, reduction="batchmean")


# Every name in config.OBJECTIVES (the list front ends offer) has its class here; a test keeps the two equal.
OBJECTIVE_TYPES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (Objective, LDIFS, L2SP, FLYP, LinearProbeOnly, LabelSmoothing, FLYPCrossEntropy, LoRA,
                              Lipsum, ZSCL)}
