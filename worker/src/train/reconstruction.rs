//! The picture of a MIM pass for TensorBoard: the first image of the batch, what the encoder
//! saw (removed patches grey) and the reconstruction (kept patches as they were, removed ones
//! as the decoder predicted them, brought back from per-patch normalisation with the true
//! patch's mean and variance, as MAE's visualisation does), side by side.

use std::io::Cursor;

use anyhow::Context;
use tch::{Device, Kind, Tensor};

use crate::data::image::{CLIP_MEAN, CLIP_STD};
use crate::model::heads::{patchify, unpatchify};

/// A PNG strip (height S, width 3·S) and its size, from CLIP-normalised `images`
/// (B, 3, S, S), the decoder output `pred` (B, g², P²·3) and `mask` (B, g²), 1 = removed.
///
/// # Errors
/// The PNG cannot be encoded.
pub fn mim_strip(
    images: &Tensor,
    pred: &Tensor,
    mask: &Tensor,
    patch: i64,
) -> anyhow::Result<(Vec<u8>, (u32, u32))> {
    let strip = tch::no_grad(|| {
        let image = images
            .narrow(0, 0, 1)
            .to_device(Device::Cpu)
            .to_kind(Kind::Float);
        let patches = patchify(&image, patch).squeeze_dim(0); // (g², P²·3)
        let mean = patches.mean_dim(-1, true, None::<Kind>);
        let std = (patches.var_dim(-1, true, true) + 1e-6).sqrt();
        let predicted = pred.get(0).to_device(Device::Cpu).to_kind(Kind::Float) * std + mean;
        let removed = mask
            .get(0)
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .unsqueeze(-1);
        let kept = 1.0 - &removed;
        let seen = &patches * &kept; // removed patches at the normalised mean: grey
        let rebuilt = &patches * &kept + predicted * &removed;
        let panels: Vec<Tensor> = [patches, seen, rebuilt]
            .iter()
            .map(|p| unpatchify(p, patch))
            .collect();
        let strip = Tensor::cat(&panels, 2); // (3, S, 3S)
        let std = Tensor::from_slice(&CLIP_STD).view([3, 1, 1]);
        let mean = Tensor::from_slice(&CLIP_MEAN).view([3, 1, 1]);
        (strip * std + mean)
            .clamp(0.0, 1.0)
            .multiply_scalar(255.0)
            .round()
            .to_kind(Kind::Uint8)
            .permute([1, 2, 0]) // (S, 3S, 3)
            .contiguous()
    });
    let (height, width) = (strip.size()[0] as u32, strip.size()[1] as u32);
    let pixels = Vec::<u8>::try_from(strip.flatten(0, -1))?;
    let image = image::RgbImage::from_raw(width, height, pixels)
        .context("the reconstruction strip has the wrong number of pixels")?;
    let mut png = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding the reconstruction strip")?;
    Ok((png, (height, width)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_prediction_rebuilds_the_image_and_the_seen_panel_greys_removed_patches() {
        let (patch, size) = (4, 8);
        let images = Tensor::rand([2, 3, size, size], tch::kind::FLOAT_CPU) * 2.0 - 1.0;
        let patches = patchify(&images, patch);
        let mean = patches.mean_dim(-1, true, None::<Kind>);
        let std = (patches.var_dim(-1, true, true) + 1e-6).sqrt();
        let perfect = (&patches - mean) / std;
        let mask = Tensor::from_slice(&[1f32, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]).view([2, 4]);
        let (png, (height, width)) = mim_strip(&images, &perfect, &mask, patch).unwrap();
        assert_eq!((height, width), (8, 24));
        let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
        let pixel = |x: u32, y: u32| decoded.get_pixel(x, y).0;
        for y in 0..size as u32 {
            for x in 0..size as u32 {
                // The rebuilt panel equals the original panel (within rounding of the inverse).
                let (a, b) = (pixel(x, y), pixel(x + 16, y));
                assert!(
                    a.iter().zip(b).all(|(a, b)| a.abs_diff(b) <= 1),
                    "{a:?} vs {b:?}"
                );
            }
        }
        // Patch 0 (top left) was removed: the seen panel shows the CLIP mean colour there, one
        // colour across the patch; patch 1 (top right) was kept.
        assert_eq!(pixel(8, 0), pixel(11, 3));
        assert_eq!(pixel(12, 0), pixel(4, 0));
    }
}
