//! The four pretraining objectives on one micro-batch (ARL_SPEC.md §3): MLM, MIM, ITM and
//! alignment through knowledge, each its own forward pass over the inputs it is defined on.
//! Work the objectives have in common is done once per step: the entity graph (the reference
//! encodes it five times), the unmasked text (three times) and the full image (twice, and a
//! third time as the ITM pass's re-paired images, gathered here from the same encoding since
//! the vision tower has no dropout). Inputs stay distinct per objective; with dropout on,
//! shared text encodings share their dropout masks.

use tch::{Device, Kind, Tensor};

use super::align::align_loss;
use super::arl::ArlModel;
use super::heads::{mim_loss, patchify_normalised};
use arl_contract::config::model::ModelConfig;

/// Loss weights of `task_pretrain_arl`: mlm 1, mim 1, itm 0.1, align 1.
pub const LOSS_WEIGHTS: [f64; 4] = [1.0, 1.0, 0.1, 1.0];

/// Weights of MLM, MIM, ITM and alignment in the total; alignment at weight 0 is not computed
/// (its loss reads 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights(pub [f64; 4]);

impl Default for LossWeights {
    fn default() -> Self {
        Self(LOSS_WEIGHTS)
    }
}

/// One collated pretraining micro-batch (B samples, Lt text positions, S entity slots).
#[derive(Debug)]
pub struct PretrainBatch {
    /// Token ids (B, Lt) and keep-mask (B, Lt).
    pub text_ids: Tensor,
    /// 1 for real tokens, 0 for padding (B, Lt).
    pub text_keep: Tensor,
    /// Ids after MLM masking (B, Lt) and the MLM labels (−100 = not a target).
    pub text_ids_mlm: Tensor,
    /// MLM labels (B, Lt).
    pub mlm_labels: Tensor,
    /// Images (B, 3, S, S), normalised.
    pub images: Tensor,
    /// The batch index of each ITM pair's image (B): its own where `itm_labels` is 1, another
    /// sample's (a negative) where 0.
    pub itm_partners: Tensor,
    /// ITM labels (B).
    pub itm_labels: Tensor,
    /// Entity ids per slot (B, S), −100 = empty, and the entity→token matrix P (B, S, Lt).
    pub entity_ids: Tensor,
    /// P for `entity_ids`.
    pub positions: Tensor,
    /// Entity slots of the MLM pass (mentions overlapping an MLM target removed).
    pub entity_ids_mlm: Tensor,
    /// P for `entity_ids_mlm`.
    pub positions_mlm: Tensor,
    /// Multi-hot entity labels of the image and of the text (B, Ne).
    pub image_labels: Tensor,
    /// See `image_labels`.
    pub text_labels: Tensor,
    /// Uniform noise choosing the MIM patches to keep (B, g²).
    pub mim_noise: Tensor,
}

/// The four losses and their weighted total.
#[derive(Debug)]
pub struct PretrainLosses {
    /// Masked language modelling.
    pub mlm: Tensor,
    /// Masked image modelling.
    pub mim: Tensor,
    /// Image-text matching.
    pub itm: Tensor,
    /// Alignment through knowledge.
    pub align: Tensor,
    /// Σ weight·loss.
    pub total: Tensor,
    /// Fraction of MLM targets predicted exactly (no gradient).
    pub mlm_accuracy: Tensor,
    /// Fraction of ITM pairs classified correctly (no gradient).
    pub itm_accuracy: Tensor,
    /// The MIM decoder's output (B, g², P²·3), detached, and its mask (B, g²), 1 = removed.
    pub mim_pred: Tensor,
    /// See `mim_pred`.
    pub mim_mask: Tensor,
}

/// Runs the four passes and returns the losses (with gradients when `train`), weighted as
/// the reference does.
pub fn pretrain_losses(
    model: &ArlModel,
    cfg: &ModelConfig,
    batch: &PretrainBatch,
    train: bool,
) -> PretrainLosses {
    weighted_pretrain_losses(model, cfg, batch, train, LossWeights::default())
}

/// [`pretrain_losses`] with other weights (the paper's ablations switch alignment off).
pub fn weighted_pretrain_losses(
    model: &ArlModel,
    cfg: &ModelConfig,
    batch: &PretrainBatch,
    train: bool,
    LossWeights(weights): LossWeights,
) -> PretrainLosses {
    let vectors = model.align_head.entity_vectors(train); // (Ne, De)
    let entities = |ids: &Tensor| super::align::AlignHead::gather(&vectors, ids);
    let text = model.embed_text(&batch.text_ids, &batch.text_keep, train);
    let image = model.embed_image(&model.vision.forward(&batch.images));

    // MLM: masked text, full image, the MLM entity slots.
    let text_mlm = model.embed_text(&batch.text_ids_mlm, &batch.text_keep, train);
    let fused = model.fuse(
        &text_mlm,
        &batch.text_keep,
        &image,
        &entities(&batch.entity_ids_mlm),
        &batch.entity_ids_mlm,
        &batch.positions_mlm,
        train,
    );
    let logits = model.mlm_head.forward(&fused.text);
    let mlm = logits.flatten(0, 1).cross_entropy_loss::<Tensor>(
        &batch.mlm_labels.flatten(0, 1),
        None,
        tch::Reduction::Mean,
        -100,
        0.0,
    );

    // MIM: full text, a random 1 − mask_ratio of the patches; decoder on the tapped layer.
    let cells = cfg.vision.grid() * cfg.vision.grid();
    let keep = ((cells as f64) * (1.0 - cfg.mim.mask_ratio)) as i64;
    let masked = model
        .vision
        .forward_masked(&batch.images, &batch.mim_noise, keep);
    let entity_features = entities(&batch.entity_ids);
    let fused = model.fuse(
        &text,
        &batch.text_keep,
        &model.embed_image(&masked.tokens),
        &entity_features,
        &batch.entity_ids,
        &batch.positions,
        train,
    );
    let pred = model.mim_head.forward(
        &fused.image_taps[cfg.mim.tap_layer as usize],
        &masked.ids_restore,
    );
    let mim = mim_loss(
        &pred,
        &patchify_normalised(&batch.images, cfg.vision.patch_size),
        &masked.mask,
    );

    // ITM: full text, half the images replaced.
    // The vision tower has no dropout, so a pair's image encoding is the batch's own, gathered:
    // one tower pass fewer than the reference, the same values and gradients.
    let itm_image = image.index_select(0, &batch.itm_partners);
    let fused = model.fuse(
        &text,
        &batch.text_keep,
        &itm_image,
        &entity_features,
        &batch.entity_ids,
        &batch.positions,
        train,
    );
    let itm_logits = fused.cls_feats.apply(&model.itm_head.fc);
    let itm = itm_logits.cross_entropy_for_logits(&batch.itm_labels);

    // Alignment: uni-modal token 0 of each stream against every entity.
    let [w_mlm, w_mim, w_itm, w_align] = weights;
    let align = if w_align == 0.0 {
        Tensor::zeros([], (mim.kind(), mim.device()))
    } else {
        let (image_logits, text_logits) =
            model
                .align_head
                .logits(&image.select(1, 0), &text.select(1, 0), &vectors);
        align_loss(
            &image_logits,
            &text_logits,
            &batch.image_labels,
            &batch.text_labels,
        )
    };

    let total = &mlm * w_mlm + &mim * w_mim + &itm * w_itm + &align * w_align;
    PretrainLosses {
        mlm,
        mim,
        itm,
        align,
        total,
        mlm_accuracy: accuracy(&logits, &batch.mlm_labels),
        itm_accuracy: accuracy(&itm_logits, &batch.itm_labels),
        mim_pred: pred.detach(),
        mim_mask: masked.mask,
    }
}

/// The fraction of `labels` (−100 = none) that are the arg-max of `logits` (…, classes).
fn accuracy(logits: &Tensor, labels: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let targets = labels.ne(-100);
        let correct = logits
            .argmax(-1, false)
            .eq_tensor(labels)
            .logical_and(&targets);
        correct.sum(Kind::Float) / targets.sum(Kind::Float).clamp_min(1.0)
    })
}

impl PretrainBatch {
    /// A random but well-formed batch for `cfg` (tests and benchmarks): `batch` samples of
    /// `text_len` tokens (the last sample padded), `slots` entity slots over `entities`
    /// entities, 15 % MLM targets plus the first sample's entity-linked tokens, so the last
    /// layer's knowledge path always reaches a loss whatever the random draw.
    pub fn random(cfg: &ModelConfig, batch: i64, text_len: i64, slots: i64, entities: i64) -> Self {
        let opts = (Kind::Int64, tch::Device::Cpu);
        let vocab = cfg.text.vocab_size;
        let text_ids = Tensor::randint_low(3, vocab, [batch, text_len], opts);
        let text_keep = Tensor::ones([batch, text_len], opts);
        let _ = text_keep
            .get(batch - 1)
            .narrow(0, text_len / 2, text_len - text_len / 2)
            .fill_(0);
        let padding = text_keep.ones_like() - &text_keep;
        let text_ids: Tensor = &text_ids * &text_keep + padding * cfg.text.pad_token_id;
        let targets = Tensor::rand([batch, text_len], (Kind::Float, tch::Device::Cpu)).lt(0.15);
        let _ = targets.get(0).narrow(0, 1, slots / 2).fill_(1);
        let targets = targets.logical_and(&text_keep);
        let mlm_labels = text_ids.where_self(&targets, &Tensor::from(-100i64));
        let text_ids_mlm = Tensor::from(4i64).where_self(&targets, &text_ids); // a stand-in <mask> id
        let images = Tensor::randn(
            [batch, 3, cfg.vision.image_size, cfg.vision.image_size],
            (Kind::Float, tch::Device::Cpu),
        );
        let itm_labels = Tensor::arange(batch, opts).remainder(2);
        let own = Tensor::arange(batch, opts);
        let itm_partners = own.where_self(&itm_labels.to_kind(Kind::Bool), &own.roll([1], [0]));
        let entity_ids = Tensor::randint(entities, [batch, slots], opts);
        let _ = entity_ids
            .narrow(1, slots / 2, slots - slots / 2)
            .fill_(-100);
        let positions = Tensor::zeros([batch, slots, text_len], (Kind::Float, tch::Device::Cpu));
        for slot in 0..slots / 2 {
            let _ = positions
                .narrow(1, slot, 1)
                .narrow(2, 1 + slot, 1)
                .fill_(1.0);
        }
        let multi_hot = || {
            Tensor::rand([batch, entities], (Kind::Float, tch::Device::Cpu))
                .lt(0.3)
                .to_kind(Kind::Float)
        };
        Self {
            text_ids_mlm,
            mlm_labels,
            itm_partners,
            itm_labels,
            entity_ids_mlm: entity_ids.copy(),
            positions_mlm: positions.copy(),
            entity_ids,
            positions,
            image_labels: multi_hot(),
            text_labels: multi_hot(),
            mim_noise: Tensor::rand(
                [batch, cfg.vision.grid() * cfg.vision.grid()],
                (Kind::Float, tch::Device::Cpu),
            ),
            text_ids,
            text_keep,
            images,
        }
    }
}

impl PretrainBatch {
    /// The batch on `device`.
    pub fn to_device(self, device: Device) -> Self {
        if device == Device::Cpu {
            return self;
        }
        let to = |t: Tensor| t.to_device(device);
        Self {
            text_ids: to(self.text_ids),
            text_keep: to(self.text_keep),
            text_ids_mlm: to(self.text_ids_mlm),
            mlm_labels: to(self.mlm_labels),
            images: to(self.images),
            itm_partners: to(self.itm_partners),
            itm_labels: to(self.itm_labels),
            entity_ids: to(self.entity_ids),
            positions: to(self.positions),
            entity_ids_mlm: to(self.entity_ids_mlm),
            positions_mlm: to(self.positions_mlm),
            image_labels: to(self.image_labels),
            text_labels: to(self.text_labels),
            mim_noise: to(self.mim_noise),
        }
    }
}
