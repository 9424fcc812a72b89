//! `arl data inspect`: what a dataset holds — its manifest, counts, the first samples with their
//! linked entities — and a contact sheet PNG of its first images with their texts.

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::Path;

use anyhow::Context;
use font8x8::{BASIC_FONTS, UnicodeFonts};

use super::dicom::DicomOptions;
use super::image::{self, Rgb};
use super::labels::Labels;
use super::loader;
use super::shard::Manifest;
use super::stream::ShardSource;
use super::table::{self, ImageTextRow};

/// Side of a contact-sheet image.
const THUMB: u32 = 192;
/// Text lines under each image.
const LINES: u32 = 4;
/// Images per contact-sheet row.
const COLUMNS: u32 = 4;

/// The manifest summary, then the first `samples` rows with their texts and mentions.
pub fn describe(manifest: &Manifest, rows: &[ImageTextRow], samples: usize) -> String {
    let mut out = String::new();
    let sum =
        |f: fn(&super::shard::ShardEntry) -> u64| -> u64 { manifest.shards.iter().map(f).sum() };
    let _ = writeln!(
        out,
        "kind {:?}, text column {:?}, {} shards, {} rows, {} items, {:.1} MB",
        manifest.kind,
        manifest.text_column,
        manifest.shards.len(),
        sum(|s| s.rows),
        sum(|s| u64::from(s.items)),
        sum(|s| s.bytes) as f64 / 1e6
    );
    let _ = writeln!(out, "columns: {}", manifest.columns.join(", "));
    if !manifest.entities.is_empty() {
        let _ = writeln!(
            out,
            "entities ({}): {}",
            manifest.entities.len(),
            manifest.entities.join(" ")
        );
    }
    if !manifest.label_names.is_empty() {
        let _ = writeln!(
            out,
            "labels ({}): {}",
            manifest.label_names.len(),
            manifest.label_names.join(" | ")
        );
    }
    for row in rows.iter().take(samples) {
        let _ = writeln!(
            out,
            "\n{} ({}, {} bytes)",
            row.image_id,
            row.split,
            row.image.len()
        );
        if let Labels::Chexpert(values) = &row.labels {
            let _ = writeln!(out, "  chexpert: {values:?}");
        }
        for (t, text) in row.captions.iter().enumerate() {
            let _ = writeln!(
                out,
                "  text {t}: {text}{}",
                label_of(manifest, &row.labels, t)
            );
            for &[start, end, id] in row.txt_ents.get(t).map_or(&[][..], Vec::as_slice) {
                let surface = text
                    .chars()
                    .skip(start as usize)
                    .take((end - start).max(0) as usize)
                    .collect::<String>();
                let cui = manifest
                    .entities
                    .get(id as usize)
                    .map_or("", String::as_str);
                let _ = writeln!(out, "    [{start}, {end}) {surface:?} -> entity {id} {cui}");
            }
        }
    }
    out
}

/// What text `t` is labelled with: its answer or class.
fn label_of(manifest: &Manifest, labels: &Labels, t: usize) -> String {
    let name = |id: i64| {
        manifest
            .label_names
            .get(id as usize)
            .map_or_else(|| format!("label {id}"), Clone::clone)
    };
    match labels {
        Labels::Vqa(questions) => questions.get(t).map_or_else(String::new, |q| {
            let kind = if q.answer_type == 0 { "closed" } else { "open" };
            format!("  -> {} ({kind})", q.answers.join(" / "))
        }),
        Labels::Class(classes) => classes
            .get(t)
            .map_or_else(String::new, |&c| format!("  -> class {c} {}", name(c))),
        _ => String::new(),
    }
}

/// Draws `text` in 8×8 glyphs at `(x, y)` of `canvas` (width `width`), in white.
fn draw_text(canvas: &mut [u8], width: u32, x: u32, y: u32, text: &str) {
    for (k, c) in text.chars().enumerate() {
        let glyph = BASIC_FONTS
            .get(c)
            .or_else(|| BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        for (dy, bits) in glyph.iter().enumerate() {
            for dx in 0..8u32 {
                if bits >> dx & 1 == 1 {
                    let (px, py) = (x + k as u32 * 8 + dx, y + dy as u32);
                    let at = ((py * width + px) * 3) as usize;
                    if px < width && at + 2 < canvas.len() {
                        canvas[at..at + 3].copy_from_slice(&[255, 255, 255]);
                    }
                }
            }
        }
    }
}

/// Word-wraps `text` into at most `lines` lines of `width` characters.
fn wrap(text: &str, width: usize, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = vec![String::new()];
    for word in text.split_whitespace() {
        let last = out.last_mut().expect("one line at least");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > width {
            out.push(String::new());
        }
        let last = out.last_mut().expect("one line at least");
        if !last.is_empty() {
            last.push(' ');
        }
        last.push_str(word);
    }
    out.truncate(lines);
    out.iter_mut()
        .for_each(|l| *l = l.chars().take(width).collect());
    out
}

/// A contact sheet of `rows`' images (centre-cropped squares) with their first text; an image
/// that does not decode is left black with its error as the text.
///
/// # Errors
/// The PNG cannot be encoded.
pub fn contact_sheet(rows: &[ImageTextRow]) -> anyhow::Result<Vec<u8>> {
    let columns = COLUMNS.min(rows.len().max(1) as u32);
    let tile_h = THUMB + LINES * 10 + 6;
    let grid_rows = (rows.len() as u32).div_ceil(columns).max(1);
    let (width, height) = (columns * THUMB, grid_rows * tile_h);
    let mut canvas = vec![0u8; (width * height * 3) as usize];
    for (k, row) in rows.iter().enumerate() {
        let (x0, y0) = ((k as u32 % columns) * THUMB, (k as u32 / columns) * tile_h);
        let thumb = loader::decode(&row.image, &DicomOptions::default())
            .and_then(|rgb| image::clip(&rgb, THUMB));
        let caption = match &thumb {
            Ok(_) => row.captions.first().cloned().unwrap_or_default(),
            Err(error) => format!("{}: {error:#}", row.image_id),
        };
        if let Ok(Rgb { pixels, .. }) = thumb {
            for y in 0..THUMB {
                let src = (y * THUMB * 3) as usize;
                let dst = (((y0 + y) * width + x0) * 3) as usize;
                canvas[dst..dst + (THUMB * 3) as usize]
                    .copy_from_slice(&pixels[src..src + (THUMB * 3) as usize]);
            }
        }
        for (line, text) in wrap(&caption, (THUMB / 8) as usize, LINES as usize)
            .iter()
            .enumerate()
        {
            draw_text(
                &mut canvas,
                width,
                x0,
                y0 + THUMB + 3 + line as u32 * 10,
                text,
            );
        }
    }
    let mut png = Vec::new();
    ::image::ImageEncoder::write_image(
        ::image::codecs::png::PngEncoder::new(Cursor::new(&mut png)),
        &canvas,
        width,
        height,
        ::image::ExtendedColorType::Rgb8,
    )
    .context("encoding the contact sheet")?;
    Ok(png)
}

/// Opens the dataset at `url` (through a cache in `cache`), prints its description and writes a
/// contact sheet of its first `images` rows to `sheet`.
///
/// # Errors
/// The dataset cannot be opened, or the sheet written.
pub fn inspect(
    url: &str,
    cache: &Path,
    samples: usize,
    images: usize,
    sheet: &Path,
) -> anyhow::Result<String> {
    let source = ShardSource::open(url, cache, 1 << 30)?;
    let mut rows = Vec::new();
    for shard in 0..source.manifest().shards.len() as u32 {
        if rows.len() >= samples.max(images) {
            break;
        }
        for batch in source.shard(shard)? {
            for r in 0..batch.num_rows() {
                rows.push(table::row(&batch, r)?);
            }
        }
    }
    let text = describe(source.manifest(), &rows, samples);
    let shown = &rows[..images.min(rows.len())];
    std::fs::write(sheet, contact_sheet(shown)?)
        .with_context(|| format!("writing {}", sheet.display()))?;
    Ok(text)
}
