//! ARL's image transforms (ARL_SPEC.md §4.5) without Python: decode (JPEG, PNG; grey replicated
//! to RGB, alpha dropped), resize with PIL's antialiased bicubic (a convolution whose Keys
//! a = −0.5 kernel widens with the downscale factor: `fast_image_resize`'s Catmull-Rom filter),
//! centre crop, torchvision's RandomResizedCrop, and CLIP normalisation into a (3, S, S) tensor.

use anyhow::{Context, ensure};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand::Rng;
use tch::Tensor;

/// CLIP's per-channel mean.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel standard deviation.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// The largest width or height accepted, in pixels (a decoder is not let past it).
pub const MAX_SIDE: u32 = 16_384;
/// The most pixels an image may have, decoded or resized (about 200 MB as RGB).
pub const MAX_PIXELS: u64 = 64 << 20;

/// Refuses an image of `width × height` pixels that is empty or past the bounds.
///
/// # Errors
/// A zero side, a side above [`MAX_SIDE`], or more than [`MAX_PIXELS`] pixels (named).
pub fn check_size(width: u64, height: u64, what: &str) -> anyhow::Result<()> {
    ensure!(
        width > 0 && height > 0,
        "{what} is empty ({width}×{height})"
    );
    ensure!(
        width <= u64::from(MAX_SIDE) && height <= u64::from(MAX_SIDE),
        "{what} is {width}×{height}, more than {MAX_SIDE} pixels on a side"
    );
    ensure!(
        width * height <= MAX_PIXELS,
        "{what} is {width}×{height}, more than {MAX_PIXELS} pixels"
    );
    Ok(())
}

/// An 8-bit RGB image, rows of interleaved channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// `height × width × 3` bytes.
    pub pixels: Vec<u8>,
}

/// Decodes JPEG or PNG bytes to RGB.
///
/// # Errors
/// Bytes that are not a supported, intact image.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Rgb> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .context("reading an image")?;
    // The header's size is checked before the decoder allocates anything.
    let (width, height) = reader
        .into_dimensions()
        .context("decoding an image header")?;
    check_size(u64::from(width), u64::from(height), "the image")?;
    reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?;
    if reader.format() == Some(image::ImageFormat::Png) {
        check_png_palette(bytes)?;
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        // The decoder fills a truncated JPEG with grey instead of failing: require the
        // end-of-image marker (entropy-coded data never holds FF D9) near the end.
        let tail = &bytes[bytes.len().saturating_sub(4096)..];
        ensure!(
            tail.windows(2).any(|w| w == [0xFF, 0xD9]),
            "the JPEG is truncated (no end-of-image marker)"
        );
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(4 * MAX_PIXELS);
    reader.limits(limits);
    let image = reader.decode().context("decoding an image")?;
    let rgb = image.to_rgb8();
    Ok(Rgb {
        width: rgb.width(),
        height: rgb.height(),
        pixels: rgb.into_raw(),
    })
}

/// Refuses a PNG whose palette (PLTE chunk) is not 1 to 256 whole RGB entries: png 0.18.1
/// indexes past the end of such a palette when it expands the image.
fn check_png_palette(bytes: &[u8]) -> anyhow::Result<()> {
    let mut at: usize = 8; // After the signature: chunks of length, type, data and CRC.
    while let Some(&[a, b, c, d, ref kind @ ..]) = bytes.get(at..at.saturating_add(8)) {
        let length = u32::from_be_bytes([a, b, c, d]) as usize;
        ensure!(
            kind != b"PLTE" || (length.is_multiple_of(3) && (3..=768).contains(&length)),
            "the PNG palette has {length} bytes, not 1 to 256 RGB entries"
        );
        at = at.saturating_add(12).saturating_add(length);
    }
    Ok(())
}

/// Resizes the region `(left, top, width, height)` of `image` to `width × height` pixels with
/// PIL's antialiased bicubic.
fn resize_region(
    image: &Rgb,
    region: (f64, f64, f64, f64),
    size: (u32, u32),
) -> anyhow::Result<Rgb> {
    let src = ImageRef::new(image.width, image.height, &image.pixels, PixelType::U8x3)?;
    let mut dst = Image::new(size.0, size.1, PixelType::U8x3);
    let (left, top, width, height) = region;
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom))
        .crop(left, top, width, height);
    Resizer::new().resize(&src, &mut dst, &options)?;
    Ok(Rgb {
        width: size.0,
        height: size.1,
        pixels: dst.into_vec(),
    })
}

/// torchvision's `Resize(size)`: the shorter side becomes `size`, the longer
/// `int(size · long / short)`.
pub fn resize_shorter(image: &Rgb, size: u32) -> anyhow::Result<Rgb> {
    let (w, h) = (image.width, image.height);
    let scaled =
        |long: u32, short: u32| (f64::from(size) * f64::from(long) / f64::from(short)) as u32;
    let target = if w <= h {
        (size, scaled(h, w))
    } else {
        (scaled(w, h), size)
    };
    // A thin image would need a huge resize target (1 × 65535 at 288 px: 16 GB).
    check_size(
        u64::from(target.0),
        u64::from(target.1),
        &format!("the {w}×{h} image resized to {size} px on its shorter side"),
    )?;
    resize_region(image, (0.0, 0.0, f64::from(w), f64::from(h)), target)
}

/// torchvision's `CenterCrop(size)` (offsets rounded half to even, as Python's `round`).
pub fn center_crop(image: &Rgb, size: u32) -> Rgb {
    let offset = |total: u32| {
        ((f64::from(total) - f64::from(size)) / 2.0)
            .round_ties_even()
            .max(0.0) as u32
    };
    let (top, left) = (offset(image.height), offset(image.width));
    let row = |y: u32| {
        let start = ((top + y) * image.width + left) as usize * 3;
        &image.pixels[start..start + size as usize * 3]
    };
    Rgb {
        width: size,
        height: size,
        pixels: (0..size).flat_map(|y| row(y).iter().copied()).collect(),
    }
}

/// torchvision's `RandomResizedCrop` box: up to ten tries of an area fraction in `scale` and a
/// log-uniform aspect ratio in `ratio`, else the centre crop of the ratio-clamped image.
/// Returns `(left, top, width, height)`.
pub fn random_resized_crop_box(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> (u32, u32, u32, u32) {
    let area = f64::from(width) * f64::from(height);
    let (log_low, log_high) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(scale.0..=scale.1);
        let aspect = rng.gen_range(log_low..=log_high).exp();
        let w = (target * aspect).sqrt().round() as u32;
        let h = (target / aspect).sqrt().round() as u32;
        if (1..=width).contains(&w) && (1..=height).contains(&h) {
            let top = rng.gen_range(0..=height - h);
            let left = rng.gen_range(0..=width - w);
            return (left, top, w, h);
        }
    }
    let in_ratio = f64::from(width) / f64::from(height);
    let (w, h) = if in_ratio < ratio.0 {
        (width, (f64::from(width) / ratio.0).round() as u32)
    } else if in_ratio > ratio.1 {
        ((f64::from(height) * ratio.1).round() as u32, height)
    } else {
        (width, height)
    };
    ((width - w) / 2, (height - h) / 2, w, h)
}

/// ARL's `clip` transform: resize the shorter side to `size`, centre crop `size × size`.
///
/// # Errors
/// The image cannot be resized (zero-sized).
pub fn clip(image: &Rgb, size: u32) -> anyhow::Result<Rgb> {
    Ok(center_crop(&resize_shorter(image, size)?, size))
}

/// ARL's `clip_resizedcrop`: RandomResizedCrop(size, scale (0.9, 1), ratio (3/4, 4/3), bicubic).
///
/// # Errors
/// The image cannot be resized (zero-sized).
pub fn clip_resized_crop(image: &Rgb, size: u32, rng: &mut impl Rng) -> anyhow::Result<Rgb> {
    let (left, top, w, h) = random_resized_crop_box(
        image.width,
        image.height,
        (0.9, 1.0),
        (0.75, 4.0 / 3.0),
        rng,
    );
    let region = (f64::from(left), f64::from(top), f64::from(w), f64::from(h));
    resize_region(image, region, (size, size))
}

/// `ToTensor` then CLIP `Normalize`: float (3, H, W).
pub fn normalized_tensor(image: &Rgb) -> Tensor {
    let (h, w) = (i64::from(image.height), i64::from(image.width));
    let hwc = Tensor::from_slice(&image.pixels).view([h, w, 3]);
    let mean = Tensor::from_slice(&CLIP_MEAN).view([3, 1, 1]);
    let std = Tensor::from_slice(&CLIP_STD).view([3, 1, 1]);
    (hwc.permute([2, 0, 1]).to_kind(tch::Kind::Float) / 255.0 - mean) / std
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn random_boxes_keep_to_the_scale_and_ratio_and_repeat_with_the_seed() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let (left, top, w, h) =
                random_resized_crop_box(400, 300, (0.9, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(left + w <= 400 && top + h <= 300);
            let area = f64::from(w * h) / 120_000.0;
            assert!((0.88..=1.0).contains(&area), "{area}");
        }
        let draw = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            random_resized_crop_box(400, 300, (0.9, 1.0), (0.75, 4.0 / 3.0), &mut rng)
        };
        assert_eq!(draw(5), draw(5));
        // A very wide image never fits the ratio: the fallback is the clamped centre crop.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            random_resized_crop_box(1000, 10, (0.9, 1.0), (0.75, 4.0 / 3.0), &mut rng),
            (493, 0, 13, 10)
        );
    }

    #[test]
    fn normalisation_is_clip_s() {
        let image = Rgb {
            width: 1,
            height: 1,
            pixels: vec![255, 0, 128],
        };
        let t = Vec::<f32>::try_from(normalized_tensor(&image).flatten(0, -1)).unwrap();
        let expected = [
            (1.0 - CLIP_MEAN[0]) / CLIP_STD[0],
            (0.0 - CLIP_MEAN[1]) / CLIP_STD[1],
            (128.0 / 255.0 - CLIP_MEAN[2]) / CLIP_STD[2],
        ];
        for (a, b) in t.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6);
        }
        assert!(decode(b"not an image").is_err());
    }

    /// A PNG of `width × height` grey pixels.
    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        image::GrayImage::new(width, height)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .unwrap();
        bytes
    }

    #[test]
    fn thin_huge_and_empty_images_are_refused_before_any_allocation() {
        // 1 × 65535: a few hundred bytes that would resize to 16 GB at 288 px.
        let thin = decode(&png(1, 65_535)).unwrap_err();
        assert!(format!("{thin:#}").contains("1×65535"), "{thin:#}");
        let thin = decode(&png(1, 16_000)).unwrap();
        let error = clip(&thin, 288).unwrap_err();
        assert!(
            format!("{error:#}").contains("resized to 288 px"),
            "{error:#}"
        );
        // A decompression bomb: a 16384 × 16384 PNG of zeros compresses to kilobytes.
        let bomb = png(16_384, 16_384);
        assert!(bomb.len() < 2 << 20, "{}", bomb.len());
        let error = decode(&bomb).unwrap_err();
        assert!(format!("{error:#}").contains("pixels"), "{error:#}");
        let truncated = png(64, 64);
        assert!(decode(&truncated[..truncated.len() / 2]).is_err());
        assert!(check_size(0, 10, "x").is_err());
        assert!(decode(&png(64, 48)).is_ok());
    }

    #[test]
    fn a_png_palette_of_partial_entries_is_refused() {
        let chunk = |kind: &[u8], data: &[u8]| {
            [&(data.len() as u32).to_be_bytes()[..], kind, data, &[0; 4]].concat()
        };
        let with_palette = |palette: &[u8]| {
            [
                &b"\x89PNG\r\n\x1a\n"[..],
                &chunk(b"IHDR", &[0; 13]),
                &chunk(b"PLTE", palette),
            ]
            .concat()
        };
        assert!(check_png_palette(&with_palette(&[1, 2, 3])).is_ok());
        let error = check_png_palette(&with_palette(&[1, 2])).unwrap_err();
        assert!(error.to_string().contains("palette has 2 bytes"), "{error}");
        assert!(check_png_palette(&with_palette(&[0; 771])).is_err());
    }
}
