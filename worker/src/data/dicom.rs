//! DICOM images to 8-bit RGB with dicom-rs. Greyscale frames go through the standard display
//! pipeline: the modality transform (Rescale Slope/Intercept, or a Modality LUT Sequence), then
//! the VOI transform (the file's VOI LUT Sequence, else its first window with its VOI LUT
//! Function, else a percentile window of the frame's own values), mapped to 0–255, and inverted
//! for MONOCHROME1. Colour frames (RGB, YBR_FULL, and the RGB that JPEG / JPEG 2000 decoders
//! return) are converted to 8-bit RGB. Uncompressed, deflated, RLE, JPEG (baseline, lossless) and
//! JPEG 2000 data decode; anything else is an error naming what is unsupported.

use anyhow::{Context, bail, ensure};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{
    ConvertOptions, DecodedPixelData, ModalityLutOption, PhotometricInterpretation, PixelDecoder,
    PlanarConfiguration, Rescale, VoiLutFunction, WindowLevel, WindowLevelTransform,
};
use serde::Deserialize;

use super::image::Rgb;

mod guard;

/// Whether `bytes` start like a DICOM Part 10 file (a 128-byte preamble, then `DICM`).
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM")
}

/// How greyscale DICOM values become display values.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DicomOptions {
    /// Lower and upper percentile of a frame's values that bound its window when the file has no
    /// VOI LUT or window (`[0, 100]` is a min-max window).
    pub percentile_window: [f64; 2],
    /// Always use the percentile window, even when the file has its own.
    pub ignore_file_window: bool,
}

impl Default for DicomOptions {
    fn default() -> Self {
        Self {
            percentile_window: [0.5, 99.5],
            ignore_file_window: false,
        }
    }
}

impl DicomOptions {
    /// Checks the percentiles.
    ///
    /// # Errors
    /// Percentiles outside 0–100 or not increasing.
    pub fn validate(&self) -> anyhow::Result<()> {
        let [low, high] = self.percentile_window;
        ensure!(
            (0.0..=100.0).contains(&low) && (0.0..=100.0).contains(&high) && low < high,
            "dicom.percentile_window = [{low}, {high}]: need 0 <= low < high <= 100"
        );
        Ok(())
    }
}

/// Which frames of a multi-frame image to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frames {
    /// Only the first.
    First,
    /// Every frame, in order.
    All,
}

/// Decodes a DICOM file's frames to 8-bit RGB (grey replicated to three channels).
///
/// # Errors
/// Bytes that are not DICOM, a file without pixel data, an unsupported transfer syntax,
/// photometric interpretation or bit depth, or pixel data that does not decode.
pub fn decode(bytes: &[u8], options: &DicomOptions, frames: Frames) -> anyhow::Result<Vec<Rgb>> {
    let object = parse(bytes)?;
    check_pixel_size(&object)?;
    let transfer_syntax = object.meta().transfer_syntax().trim_end_matches('\0');
    let pixels = object.decode_pixel_data().with_context(|| {
        format!(
            "decoding the pixel data (transfer syntax {})",
            transfer_syntax_name(transfer_syntax)
        )
    })?;
    let count = match frames {
        Frames::First => 1,
        Frames::All => pixels.number_of_frames(),
    };
    let modality_lut = ModalityLut::read(&object)?;
    (0..count)
        .map(|frame| {
            frame_to_rgb(&pixels, frame, modality_lut.as_ref(), options)
                .with_context(|| format!("frame {frame}"))
        })
        .collect()
}

/// Refuses, before the pixel data is decoded (all frames at once), a frame past the image
/// bounds or frames that together would take more than [`MAX_DECODED_BYTES`].
fn check_pixel_size(object: &DefaultDicomObject) -> anyhow::Result<()> {
    if object.element(tags::PIXEL_DATA).is_err() {
        // No pixel data: decoding says so.
        return Ok(());
    }
    let number = |tag, default: u64| -> u64 {
        object
            .element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(default)
    };
    let (rows, columns) = (number(tags::ROWS, 0), number(tags::COLUMNS, 0));
    super::image::check_size(columns, rows, "the DICOM frame")?;
    let frames = number(tags::NUMBER_OF_FRAMES, 1).max(1);
    let samples = number(tags::SAMPLES_PER_PIXEL, 1).max(1);
    let bytes = number(tags::BITS_ALLOCATED, 16).max(8).div_ceil(8);
    // Saturating: a forged Number of Frames must not wrap the product below the bound.
    let total = [columns, frames, samples, bytes]
        .into_iter()
        .fold(rows, u64::saturating_mul);
    anyhow::ensure!(
        total <= MAX_DECODED_BYTES,
        "the DICOM pixel data would decode to {total} bytes ({frames} frames of {columns}×{rows}), \
         more than {MAX_DECODED_BYTES}"
    );
    guard::frames(object)
}

/// The most bytes a DICOM file's pixel data may decode to.
const MAX_DECODED_BYTES: u64 = 1 << 30;

/// The descriptive text attributes of a DICOM file that are present and not empty, by keyword:
/// Modality, BodyPartExamined, StudyDescription, SeriesDescription, ProtocolName.
///
/// # Errors
/// Bytes that are not a DICOM file.
pub fn text_tags(bytes: &[u8]) -> anyhow::Result<Vec<(&'static str, String)>> {
    let object = parse(bytes)?;
    let wanted = [
        ("Modality", tags::MODALITY),
        ("BodyPartExamined", tags::BODY_PART_EXAMINED),
        ("StudyDescription", tags::STUDY_DESCRIPTION),
        ("SeriesDescription", tags::SERIES_DESCRIPTION),
        ("ProtocolName", tags::PROTOCOL_NAME),
    ];
    Ok(wanted
        .into_iter()
        .filter_map(|(name, tag)| {
            let value = object.element(tag).ok()?.to_str().ok()?;
            let value = value
                .trim_matches(|c: char| c.is_whitespace() || c == '\0')
                .to_owned();
            (!value.is_empty()).then_some((name, value))
        })
        .collect())
}

/// Reads a Part 10 file from memory.
fn parse(bytes: &[u8]) -> anyhow::Result<DefaultDicomObject> {
    ensure!(
        is_dicom(bytes),
        "not a DICOM file (no DICM marker after the 128-byte preamble)"
    );
    guard::lengths(&bytes[132..]).context("parsing the DICOM data set")?;
    OpenFileOptions::new()
        .from_reader(&bytes[128..])
        .context("parsing the DICOM data set")
}

/// The name of a common transfer syntax, with its UID.
fn transfer_syntax_name(uid: &str) -> String {
    let name = match uid {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended (12-bit)",
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "JPEG Lossless",
        "1.2.840.10008.1.2.4.80" => "JPEG-LS Lossless (unsupported: needs CharLS)",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS Near-Lossless (unsupported: needs CharLS)",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 Lossless",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        _ => "transfer syntax",
    };
    format!("{name} ({uid})")
}

/// One decoded frame to 8-bit RGB.
fn frame_to_rgb(
    pixels: &DecodedPixelData,
    frame: u32,
    modality_lut: Option<&ModalityLut>,
    options: &DicomOptions,
) -> anyhow::Result<Rgb> {
    let bits = pixels.bits_allocated();
    ensure!(
        bits == 8 || bits == 16,
        "BitsAllocated {bits} is not supported (8 or 16)"
    );
    // dicom-pixeldata asserts this in its lookup tables (0.10.1 panics on BitsStored 0 or 64).
    let stored = pixels.bits_stored();
    ensure!(
        (1..=bits).contains(&stored),
        "BitsStored {stored} is not between 1 and BitsAllocated {bits}"
    );
    let (width, height) = (pixels.columns(), pixels.rows());
    let pixels_rgb = match (
        pixels.samples_per_pixel(),
        pixels.photometric_interpretation(),
    ) {
        (1, PhotometricInterpretation::Monochrome1 | PhotometricInterpretation::Monochrome2) => {
            let grey = grey_frame(pixels, frame, modality_lut, options)?;
            ensure!(
                grey.len() == width as usize * height as usize,
                "frame has {} values, expected {width}×{height}",
                grey.len()
            );
            grey.iter().flat_map(|&v| [v, v, v]).collect()
        }
        (3, PhotometricInterpretation::Rgb) => colour_frame(pixels, frame)?,
        (3, PhotometricInterpretation::YbrFull) => {
            let mut rgb = colour_frame(pixels, frame)?;
            rgb.chunks_exact_mut(3).for_each(ybr_full_to_rgb);
            rgb
        }
        (spp, pi) => {
            bail!("photometric interpretation {pi} with {spp} samples per pixel is not supported")
        }
    };
    Ok(Rgb {
        width,
        height,
        pixels: pixels_rgb,
    })
}

/// A greyscale frame through the modality and VOI transforms, to 0–255.
fn grey_frame(
    pixels: &DecodedPixelData,
    frame: u32,
    modality_lut: Option<&ModalityLut>,
    options: &DicomOptions,
) -> anyhow::Result<Vec<u8>> {
    // Modality values: Rescale Slope/Intercept (per frame where the file has them), or the LUT.
    let values: Vec<f64> = match modality_lut {
        Some(lut) => {
            // The stored values, sign-extended (the identity rescale, unlike no rescale, does).
            let identity = ModalityLutOption::Override(Rescale::new(1.0, 0.0));
            let raw: Vec<f64> = pixels.to_vec_frame_with_options(
                frame,
                &ConvertOptions::new().with_modality_lut(identity),
            )?;
            raw.into_iter().map(|v| lut.apply(v)).collect()
        }
        None => pixels.to_vec_frame(frame)?,
    };
    let mut display = voi(pixels, frame, &values, options)?;
    if *pixels.photometric_interpretation() == PhotometricInterpretation::Monochrome1 {
        display.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    Ok(display
        .into_iter()
        .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect())
}

/// The VOI transform to 0–1: the file's VOI LUT, else its window, else the percentile window.
fn voi(
    pixels: &DecodedPixelData,
    frame: u32,
    values: &[f64],
    options: &DicomOptions,
) -> anyhow::Result<Vec<f64>> {
    let per_frame = |n: usize| if n > 1 { frame as usize } else { 0 };
    if !options.ignore_file_window {
        if let Some(luts) = pixels.voi_lut_sequence()? {
            let lut = &luts[per_frame(luts.len()).min(luts.len() - 1)];
            ensure!(!lut.data.is_empty(), "the VOI LUT has no entries");
            let table = LutTable {
                first: f64::from(lut.min_pixel_value),
                entries: lut.data.iter().map(|&e| f64::from(e)).collect(),
                bits: lut.bits_stored,
            };
            return Ok(values
                .iter()
                .map(|&v| table.apply(v) / table.max())
                .collect());
        }
        if let Some(windows) = pixels.window()? {
            let window = windows[per_frame(windows.len()).min(windows.len() - 1)];
            let function = match pixels.voi_lut_function()? {
                Some(functions) => functions[per_frame(functions.len()).min(functions.len() - 1)],
                None => VoiLutFunction::Linear,
            };
            let transform = WindowLevelTransform::new(function, window);
            return Ok(values.iter().map(|&v| transform.apply(v, 1.0)).collect());
        }
    }
    let [low, high] = options.percentile_window;
    let (low, high) = (percentile(values, low), percentile(values, high));
    let width = (high - low).max(f64::EPSILON);
    let window = WindowLevel {
        center: low + width / 2.0,
        width,
    };
    let transform = WindowLevelTransform::new(VoiLutFunction::LinearExact, window);
    Ok(values.iter().map(|&v| transform.apply(v, 1.0)).collect())
}

/// numpy's `percentile` with linear interpolation, in linear time.
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let position = p / 100.0 * (values.len() - 1) as f64;
    let below = position.floor() as usize;
    let mut scratch = values.to_vec();
    let (_, &mut lower, above) = scratch.select_nth_unstable_by(below, f64::total_cmp);
    let upper = above.iter().copied().fold(f64::INFINITY, f64::min);
    if above.is_empty() {
        lower
    } else {
        lower + (upper - lower) * (position - below as f64)
    }
}

/// A colour frame as interleaved 8-bit RGB (16-bit samples scaled from their stored range).
fn colour_frame(pixels: &DecodedPixelData, frame: u32) -> anyhow::Result<Vec<u8>> {
    let samples = (pixels.rows() * pixels.columns() * 3) as usize;
    let values: Vec<u8> = if pixels.bits_allocated() == 8 {
        pixels.frame_data(frame)?.to_vec()
    } else {
        let max = ((1u32 << pixels.bits_stored().min(16)) - 1) as f64;
        pixels
            .frame_data_ow(frame)?
            .into_iter()
            .map(|v| (f64::from(v) * 255.0 / max).round().min(255.0) as u8)
            .collect()
    };
    ensure!(
        values.len() == samples,
        "frame has {} samples, expected {samples} (rows × columns × 3; \
         subsampled uncompressed YBR is not supported)",
        values.len()
    );
    Ok(match pixels.planar_configuration() {
        PlanarConfiguration::Standard => values,
        PlanarConfiguration::PixelFirst => {
            let plane = samples / 3;
            (0..plane)
                .flat_map(|i| [values[i], values[plane + i], values[2 * plane + i]])
                .collect()
        }
    })
}

/// YBR_FULL to RGB in place (PS3.3 C.7.6.3.1.2, as pydicom converts it).
fn ybr_full_to_rgb(pixel: &mut [u8]) {
    let y = f64::from(pixel[0]);
    let cb = f64::from(pixel[1]) - 128.0;
    let cr = f64::from(pixel[2]) - 128.0;
    let r = y + 1.402 * cr;
    let g = y - (0.114 * 1.772 / 0.587) * cb - (0.299 * 1.402 / 0.587) * cr;
    let b = y + 1.772 * cb;
    for (out, v) in pixel.iter_mut().zip([r, g, b]) {
        *out = v.round().clamp(0.0, 255.0) as u8;
    }
}

/// A LUT: values at or below `first` take the first entry, beyond the table the last.
struct LutTable {
    first: f64,
    entries: Vec<f64>,
    bits: u8,
}

impl LutTable {
    fn apply(&self, value: f64) -> f64 {
        let index = (value - self.first).clamp(0.0, (self.entries.len() - 1) as f64);
        self.entries[index as usize]
    }

    fn max(&self) -> f64 {
        f64::from((1u32 << self.bits.min(16)) - 1)
    }
}

/// The first item of the Modality LUT Sequence, which replaces Rescale Slope/Intercept.
struct ModalityLut(LutTable);

impl ModalityLut {
    fn read(object: &DefaultDicomObject) -> anyhow::Result<Option<Self>> {
        let Some(sequence) = object.get(tags::MODALITY_LUT_SEQUENCE) else {
            return Ok(None);
        };
        let item = sequence
            .items()
            .and_then(|items| items.first())
            .context("Modality LUT Sequence has no item")?;
        let signed = object
            .element(tags::PIXEL_REPRESENTATION)
            .ok()
            .and_then(|e| e.to_int::<u16>().ok())
            == Some(1);
        read_lut(item, signed)
            .map(|table| Some(Self(table)))
            .context("reading the Modality LUT Sequence")
    }

    fn apply(&self, value: f64) -> f64 {
        self.0.apply(value)
    }
}

/// LUT Descriptor (entries, first mapped value, bits) and LUT Data of a sequence item.
/// `signed`: whether the pixels, and so the first mapped value, are signed.
fn read_lut(item: &InMemDicomObject, signed: bool) -> anyhow::Result<LutTable> {
    let descriptor: Vec<i32> = item
        .element(tags::LUT_DESCRIPTOR)?
        .to_multi_int()
        .context("LUT Descriptor")?;
    let [entries, first, bits] = descriptor[..] else {
        bail!("LUT Descriptor has {} values, expected 3", descriptor.len());
    };
    let data: Vec<u16> = item
        .element(tags::LUT_DATA)?
        .to_multi_int()
        .context("LUT Data")?;
    // An entry count of 0 means 65,536; the first value is signed when the pixels are.
    let first = if signed && first > i32::from(i16::MAX) {
        first - 65_536
    } else {
        first
    };
    let expected = if entries == 0 {
        65_536
    } else {
        entries as usize
    };
    ensure!(
        data.len() == expected,
        "LUT Data has {} entries, the descriptor says {expected}",
        data.len()
    );
    Ok(LutTable {
        first: f64::from(first),
        entries: data.into_iter().map(f64::from).collect(),
        bits: bits.clamp(1, 16) as u8,
    })
}
