//! Checks of a DICOM file that dicom-rs 0.10 does not make before it allocates or indexes, each
//! found by fuzzing (RELIABILITY.md): element lengths against the bytes left in the file, and the
//! encapsulated frames (RLE segments, and the sizes that embedded JPEG and JPEG 2000 streams
//! declare) against the frame that the DICOM header describes.

use anyhow::{Context, ensure};
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

/// The undefined length (a sequence, item or encapsulated pixel data that ends with a delimiter).
const UNDEFINED: usize = 0xFFFF_FFFF;

/// What an element of undefined length holds until its sequence delimiter.
#[derive(Clone, Copy, PartialEq)]
enum Open {
    /// Items of data elements.
    Sequence,
    /// Items of raw bytes (encapsulated pixel data).
    Pixels,
}

/// Refuses an element whose defined length is more than the bytes left in the file. dicom-rs
/// allocates and zero-fills a value's claimed length before it reads the value, so a 722-byte
/// file that claims a 4 GB value would take 4 GB. Walks the element headers of the meta group
/// and the data set (`data`: what follows `DICM`; explicit or implicit VR, either byte order) as
/// dicom-rs reads them; leaves to dicom-rs what it cannot follow (a deflated data set, a
/// sequence inside a UN value, a truncated header).
pub(super) fn lengths(data: &[u8]) -> anyhow::Result<()> {
    let (mut at, mut explicit, mut little) = (0, true, true);
    let mut syntax: Option<&[u8]> = None; // Set once the meta group has been walked.
    let mut meta = true;
    let mut open: Vec<Open> = Vec::new();
    while at + 8 <= data.len() {
        let word = |at: usize| {
            let pair = [data[at], data[at + 1]];
            if little {
                u16::from_le_bytes(pair)
            } else {
                u16::from_be_bytes(pair)
            }
        };
        let long = |at: usize| {
            let (first, second) = (usize::from(word(at)), usize::from(word(at + 2)));
            if little {
                second << 16 | first
            } else {
                first << 16 | second
            }
        };
        let (group, element) = (word(at), word(at + 2));
        if meta && group != 0x0002 {
            meta = false;
            let uid = String::from_utf8_lossy(syntax.unwrap_or_default());
            match uid.trim_end_matches(['\0', ' ']) {
                "1.2.840.10008.1.2" => explicit = false,
                "1.2.840.10008.1.2.2" => little = false,
                "" | "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" => return Ok(()),
                _ => {}
            }
            continue;
        }
        if group == 0xFFFE {
            let length = long(at + 4);
            at += 8;
            match element {
                0xE000 if length == UNDEFINED => {}
                0xE000 => {
                    within(length, data.len() - at, group, element)?;
                    if open.last() == Some(&Open::Pixels) {
                        at += length; // A fragment: raw bytes.
                    }
                }
                0xE00D => {}
                0xE0DD => {
                    open.pop();
                }
                // Another (FFFE,xxxx): dicom-rs reads it as an element of that length.
                _ if length == UNDEFINED => return Ok(()),
                _ => {
                    within(length, data.len() - at, group, element)?;
                    at += length;
                }
            }
            continue;
        }
        let vr = &data[at + 4..at + 6];
        // As dicom-rs reads a header: the VRs of PS3.5 Table 7.1-2 have a 16-bit length, all
        // others (an unknown VR is read as UN) a 32-bit one after two reserved bytes.
        let short = [
            "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH",
            "SL", "SS", "ST", "TM", "UI", "UL", "US",
        ];
        let (length, header) = if !explicit {
            (long(at + 4), 8)
        } else if short.iter().any(|s| s.as_bytes() == vr) {
            (usize::from(word(at + 6)), 8)
        } else if at + 12 <= data.len() {
            (long(at + 8), 12)
        } else {
            return Ok(());
        };
        at += header;
        let pixel_data = (group, element) == (0x7FE0, 0x0010);
        if length == UNDEFINED {
            let kind = if pixel_data || (explicit && matches!(vr, b"OB" | b"OW")) {
                Open::Pixels
            } else if !explicit || vr == b"SQ" {
                Open::Sequence
            } else {
                return Ok(()); // UN: a sequence in implicit VR inside, not followed.
            };
            open.push(kind);
            continue;
        }
        within(length, data.len() - at, group, element)?;
        if meta && element == 0x0010 {
            syntax = Some(&data[at..at + length]);
        }
        // A sequence of defined length: its items follow. In implicit VR, a value is taken for
        // one when it starts with an item that fits in it.
        let sequence = if explicit {
            vr == b"SQ"
        } else {
            !pixel_data
                && length >= 8
                && (word(at), word(at + 2)) == (0xFFFE, 0xE000)
                && (long(at + 4) == UNDEFINED || long(at + 4) <= length - 8)
        };
        if !sequence {
            at += length;
        }
    }
    Ok(())
}

/// Refuses `length` bytes of element `(group,element)` where `left` remain.
fn within(length: usize, left: usize, group: u16, element: u16) -> anyhow::Result<()> {
    ensure!(
        length <= left,
        "DICOM element ({group:04X},{element:04X}) claims {length} bytes, more than the {left} \
         left in the file"
    );
    Ok(())
}

/// The frame that the header describes, as the dicom-rs decoders read it.
struct Frame {
    rows: usize,
    columns: usize,
    samples: usize,
    bytes_per_sample: usize,
}

/// Checks the encapsulated frames against the header's frame before dicom-rs decodes them. Its
/// RLE decoder indexes past a fragment shorter than its 64-byte header and past a segment that
/// decodes to fewer bytes than the frame has pixels; its JPEG and JPEG 2000 decoders write a
/// stream as large as it declares itself into a buffer of the header's frame size (and allocate
/// for it: a 64 × 64 header could carry a 60000 × 60000 stream).
pub(super) fn frames(object: &DefaultDicomObject) -> anyhow::Result<()> {
    let number = |tag| {
        object
            .get(tag)
            .and_then(|e| e.uint16().ok())
            .map(usize::from)
    };
    let (Some(rows), Some(columns), Some(samples), Some(bits)) = (
        number(tags::ROWS),
        number(tags::COLUMNS),
        number(tags::SAMPLES_PER_PIXEL),
        number(tags::BITS_ALLOCATED),
    ) else {
        return Ok(()); // The decoder names the missing attribute.
    };
    let Some(fragments) = object.get(tags::PIXEL_DATA).and_then(|e| e.fragments()) else {
        return Ok(()); // Native pixel data.
    };
    let frame = Frame {
        rows,
        columns,
        samples,
        bytes_per_sample: bits.div_ceil(8),
    };
    match object.meta().transfer_syntax().trim_end_matches('\0') {
        "1.2.840.10008.1.2.5" => {
            for (index, fragment) in fragments.iter().enumerate() {
                rle(fragment, &frame).with_context(|| format!("RLE frame {index}"))?;
            }
        }
        // As the decoder reads them: a stream may span fragments, a fragment hold several.
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => jpeg(&fragments.concat(), &frame)?,
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => {
            for fragment in fragments {
                jpeg_2000(fragment, &frame)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One RLE frame: its header, and each segment that the decoder reads decoding to at least the
/// frame's pixels.
fn rle(fragment: &[u8], frame: &Frame) -> anyhow::Result<()> {
    let header = fragment
        .get(..64)
        .with_context(|| format!("{} bytes, less than its 64-byte header", fragment.len()))?;
    let word = |i: usize| {
        header[4 * i..4 * i + 4]
            .iter()
            .rev()
            .fold(0usize, |value, &byte| value << 8 | usize::from(byte))
    };
    let segments = word(0);
    ensure!(
        segments <= 15,
        "{segments} segments, more than the 15 of its header"
    );
    let pixels = frame.rows * frame.columns;
    for segment in 0..segments.min(frame.samples * frame.bytes_per_sample) {
        let end = if segment + 1 < segments {
            word(segment + 2)
        } else {
            fragment.len()
        };
        // A range outside the fragment is refused by the decoder itself.
        if let Some(data) = fragment.get(word(segment + 1)..end) {
            let decoded = packbits_len(data);
            ensure!(
                decoded >= pixels,
                "segment {segment} decodes to {decoded} bytes, not the {}×{} of the frame",
                frame.rows,
                frame.columns
            );
        }
    }
    Ok(())
}

/// The number of bytes PackBits data decodes to (a truncated run counts what is there).
fn packbits_len(data: &[u8]) -> usize {
    let (mut at, mut decoded) = (0, 0);
    while let Some(&header) = data.get(at) {
        match header as i8 {
            -128 => at += 1,
            count @ -127..=-1 => {
                decoded += usize::from(count.unsigned_abs()) + 1;
                at += 2;
            }
            count => {
                let literal = usize::from(count as u8) + 1;
                decoded += literal.min(data.len() - at - 1);
                at += 1 + literal;
            }
        }
    }
    decoded
}

/// Refuses a stream of `width × height` pixels of `components` samples of `bytes` each that
/// does not fit the header's frame.
fn fits(
    what: &str,
    (width, height, components, bytes): (usize, usize, usize, usize),
    frame: &Frame,
) -> anyhow::Result<()> {
    ensure!(
        width <= frame.columns
            && height <= frame.rows
            && components <= frame.samples
            && bytes <= frame.bytes_per_sample,
        "the {what} stream is {width}×{height} with {components} samples of {bytes} bytes, larger \
         than the {}×{} frame of {} samples of {} bytes that the DICOM header describes",
        frame.columns,
        frame.rows,
        frame.samples,
        frame.bytes_per_sample
    );
    Ok(())
}

/// The frame sizes (SOFn segments) of the JPEG streams in `data`, walked marker by marker.
fn jpeg(data: &[u8], frame: &Frame) -> anyhow::Result<()> {
    let be16 = |at: usize| usize::from(data[at]) << 8 | usize::from(data[at + 1]);
    let mut at = 0;
    // From each start of image to its end of image.
    while let Some(start) = data[at..].windows(2).position(|w| w == [0xFF, 0xD8]) {
        at += start + 2;
        while at + 4 <= data.len() && data[at] == 0xFF {
            let marker = data[at + 1];
            at += 2;
            match marker {
                0xD9 => break,
                0xFF | 0x01 | 0xD0..=0xD8 => {
                    at -= usize::from(marker == 0xFF); // A fill byte.
                    continue;
                }
                _ => {}
            }
            let length = be16(at);
            let Some(segment) = data.get(at..at + length) else {
                return Ok(()); // Truncated: the decoder says so.
            };
            // A start-of-frame marker (not DHT, JPG or DAC, which share the range).
            if matches!(marker, 0xC0..=0xCF)
                && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
                && let [_, _, precision, y0, y1, x0, x1, components, ..] = *segment
            {
                let size = |high: u8, low: u8| usize::from(high) << 8 | usize::from(low);
                let bytes = usize::from(precision).div_ceil(8);
                let stream = (size(x0, x1), size(y0, y1), usize::from(components), bytes);
                fits("JPEG", stream, frame)?;
            }
            at += length;
            if marker == 0xDA {
                // Entropy-coded data up to the next marker (not a stuffed 0 or a restart).
                while at + 1 < data.len()
                    && (data[at] != 0xFF || matches!(data[at + 1], 0x00 | 0xD0..=0xD7))
                {
                    at += 1;
                }
            }
        }
        at = at.min(data.len());
    }
    Ok(())
}

/// The image and tile sizes of a JPEG 2000 codestream in `fragment` (its SIZ segment, right
/// after the start of codestream).
fn jpeg_2000(fragment: &[u8], frame: &Frame) -> anyhow::Result<()> {
    let Some(start) = fragment
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])
    else {
        return Ok(());
    };
    let Some(siz) = fragment.get(start + 4..start + 42) else {
        return Ok(()); // Truncated: the decoder says so.
    };
    let u32_at = |at: usize| {
        siz[at..at + 4]
            .iter()
            .fold(0usize, |value, &byte| value << 8 | usize::from(byte))
    };
    // Lsiz, Rsiz, then Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz.
    let [
        x,
        y,
        x_offset,
        y_offset,
        tile_x,
        tile_y,
        tile_x_offset,
        tile_y_offset,
    ] = [4, 8, 12, 16, 20, 24, 28, 32].map(u32_at);
    let components = usize::from(siz[36]) << 8 | usize::from(siz[37]);
    let (Some(width), Some(height)) = (x.checked_sub(x_offset), y.checked_sub(y_offset)) else {
        anyhow::bail!("the JPEG 2000 image offset {x_offset}×{y_offset} lies past its size {x}×{y}")
    };
    fits("JPEG 2000", (width, height, components, 1), frame)?;
    let tiles =
        |size: usize, offset: usize, tile: usize| size.saturating_sub(offset).div_ceil(tile.max(1));
    let count = tiles(x, tile_x_offset, tile_x) * tiles(y, tile_y_offset, tile_y);
    ensure!(
        tile_x > 0 && tile_y > 0 && count <= 65_535,
        "the JPEG 2000 stream has {count} tiles of {tile_x}×{tile_y}, more than 65535"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_lengths_count_runs_literals_and_truncated_literals() {
        // A run of 3, a literal of 3, a no-op; then a literal of 6 cut after 2 bytes.
        assert_eq!(packbits_len(&[0xFE, 7, 2, 1, 2, 3, 0x80]), 6);
        assert_eq!(packbits_len(&[5, 1, 2]), 2);
        assert_eq!(packbits_len(&[]), 0);
    }

    const FRAME: Frame = Frame {
        rows: 64,
        columns: 64,
        samples: 3,
        bytes_per_sample: 1,
    };

    #[test]
    fn embedded_streams_larger_than_the_frame_are_refused() {
        // SOI, a SOF0 of 64 × `height` with 3 components of 8 bits, EOI.
        let sof = |height: u16| {
            let [y0, y1] = height.to_be_bytes();
            vec![
                0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, y0, y1, 0, 64, 3, 1, 0x11, 0, 0xFF, 0xD9,
            ]
        };
        assert!(jpeg(&sof(64), &FRAME).is_ok());
        let error = jpeg(&[sof(64), sof(60_000)].concat(), &FRAME).unwrap_err();
        assert!(
            error.to_string().contains("JPEG stream is 64×60000"),
            "{error}"
        );
        // SOC, then a SIZ of `x` × 64 pixels in tiles of `tile` × `tile`, 3 components.
        let siz = |x: u32, tile: u32| {
            let mut bytes = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
            for value in [x, 64, 0, 0, tile, tile, 0, 0] {
                bytes.extend(value.to_be_bytes());
            }
            bytes.extend([0, 3]);
            bytes
        };
        assert!(jpeg_2000(&siz(64, 64), &FRAME).is_ok());
        let error = jpeg_2000(&siz(65, 64), &FRAME).unwrap_err();
        assert!(
            error.to_string().contains("JPEG 2000 stream is 65×64"),
            "{error}"
        );
        let error = jpeg_2000(&siz(64, 0), &FRAME).unwrap_err();
        assert!(error.to_string().contains("tiles of 0×0"), "{error}");
    }
}
