//! Draws a scene as a chest-radiograph-like 8-bit greyscale image: soft tissue, lung fields with
//! ribs, mediastinum, heart silhouette and diaphragm, then the findings (effusion with a
//! meniscus, pneumothorax rim with its pleural line, nodules, plate atelectasis, perihilar
//! edema, patchy consolidation), film noise and exposure. Coordinates are fractions of the
//! image; the patient's right is on the viewer's left.

use rand::Rng;

use super::scene::{Lobe, Scene, Side, Size, Zone};

/// 1 well inside an ellipse, 0 outside, a soft ramp at its edge (`e` = normalised radius²).
fn inside(e: f32) -> f32 {
    ((1.0 - e) / 0.08 + 0.5).clamp(0.0, 1.0)
}

/// Normalised radius² of `(x, y)` in the ellipse at `c` with radii `r`.
fn ellipse(x: f32, y: f32, c: (f32, f32), r: (f32, f32)) -> f32 {
    ((x - c.0) / r.0).powi(2) + ((y - c.1) / r.1).powi(2)
}

/// One lung's outline.
#[derive(Clone, Copy)]
struct Lung {
    centre: (f32, f32),
    radii: (f32, f32),
    top: f32,
    height: f32,
}

impl Lung {
    /// The vertical band of a zone.
    fn zone(&self, zone: Zone, side: Side) -> (f32, f32) {
        let thirds = match (zone, side) {
            (Zone::Upper, _) => (0.0, 0.4),
            (Zone::Middle, _) => (0.4, 0.7),
            (Zone::Lower, Side::Left) => (0.45, 1.0),
            (Zone::Lower, _) => (0.7, 1.0),
        };
        (
            self.top + thirds.0 * self.height,
            self.top + thirds.1 * self.height,
        )
    }
}

/// The layout of one scene.
struct Layout {
    cx: f32,
    right: Lung,
    left: Lung,
    heart: ((f32, f32), (f32, f32)),
    blobs: Vec<(f32, f32, f32)>,
}

impl Layout {
    fn lung(&self, side: Side) -> &Lung {
        if side == Side::Right {
            &self.right
        } else {
            &self.left
        }
    }

    fn new(scene: &Scene, rng: &mut impl Rng) -> Self {
        let a = scene.anatomy;
        let cx = 0.5 + a.shift;
        let top = 0.16;
        let lung = |sign: f32| Lung {
            centre: (cx + sign * a.thorax * 0.52, top + a.lung_height / 2.0),
            radii: (a.thorax * 0.44, a.lung_height / 2.0),
            top,
            height: a.lung_height,
        };
        let heart_rx = a.cardiothoracic_ratio * a.thorax;
        let heart = (
            (cx + 0.2 * heart_rx, top + a.lung_height - 0.1),
            (heart_rx, 0.13),
        );
        // Consolidation: a few overlapping blobs in its zone.
        let blobs = scene
            .consolidation
            .map(|lobe| {
                let l = if lobe.side == Side::Right {
                    lung(-1.0)
                } else {
                    lung(1.0)
                };
                let (y0, y1) = l.zone(lobe.zone, lobe.side);
                (0..5)
                    .map(|_| {
                        (
                            l.centre.0 + rng.gen_range(-0.5..0.5) * l.radii.0,
                            rng.gen_range(y0..y1),
                            rng.gen_range(0.03..0.06),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            cx,
            right: lung(-1.0),
            left: lung(1.0),
            heart,
            blobs,
        }
    }
}

/// The intensity (0–1, before noise) at `(x, y)`.
fn intensity(scene: &Scene, layout: &Layout, x: f32, y: f32) -> f32 {
    let a = scene.anatomy;
    let body = inside(ellipse(x, y, (layout.cx, 0.58), (a.thorax * 1.3, 0.6)));
    let mut v = 0.04 + 0.38 * body;
    for side in [Side::Right, Side::Left] {
        let lung = layout.lung(side);
        let e = ellipse(x, y, lung.centre, lung.radii);
        let mut air = inside(e);
        if air == 0.0 {
            continue;
        }
        let across = (x - lung.centre.0) / lung.radii.0;
        let lateral = if side == Side::Right { -across } else { across };
        let mut lung_v = 0.13;
        // Ribs: curved bands, rising laterally.
        let rib_space = lung.height / 9.0;
        let rib_y = y - lung.top + 0.05 * across * across;
        let phase = (rib_y / rib_space).fract();
        if rib_y > 0.0 && phase < 0.22 {
            lung_v += 0.08;
        }
        if scene.pneumothorax == Some(side) {
            let collapsed = ellipse(
                x,
                y,
                (
                    lung.centre.0 - 0.25 * lung.radii.0 * lateral.signum(),
                    lung.centre.1 + 0.05,
                ),
                (lung.radii.0 * 0.68, lung.radii.1 * 0.82),
            );
            if collapsed > 1.0 {
                lung_v = 0.05;
            }
            if (collapsed - 1.0).abs() < 0.06 {
                lung_v += 0.18;
            }
        }
        if scene.edema {
            let hilum = (
                layout.cx + (lung.centre.0 - layout.cx) * 0.55,
                lung.top + lung.height * 0.45,
            );
            let d2 = (x - hilum.0).powi(2) + (y - hilum.1).powi(2);
            lung_v += 0.24 * (-d2 / (2.0 * 0.09f32.powi(2))).exp();
        }
        if let Some(Lobe { side: s, zone }) = scene.atelectasis
            && s == side
        {
            let (y0, y1) = lung.zone(zone, side);
            let band = (y0 + y1) / 2.0 + 0.08 * across;
            if (y - band).abs() < 0.014 {
                lung_v += 0.26;
            }
        }
        if let Some(lobe) = scene.consolidation
            && lobe.side == side
        {
            let patch: f32 = layout
                .blobs
                .iter()
                .map(|&(bx, by, r)| (-((x - bx).powi(2) + (y - by).powi(2)) / (r * r)).exp())
                .sum();
            lung_v += 0.32 * patch.min(1.0);
        }
        for nodule in scene.nodules.iter().filter(|n| n.lobe.side == side) {
            let (y0, y1) = lung.zone(nodule.lobe.zone, side);
            let centre = (
                lung.centre.0 + (nodule.offset.0 - 0.5) * lung.radii.0 * 1.1,
                y0 + nodule.offset.1 * (y1 - y0),
            );
            let r = nodule.size_mm as f32 * 0.0018;
            lung_v += 0.34 * inside(ellipse(x, y, centre, (r, r)));
        }
        if let Some((s, size)) = scene.effusion
            && (s == side || s == Side::Bilateral)
        {
            let depth = match size {
                Size::Small => 0.14,
                Size::Moderate => 0.3,
                Size::Large => 0.5,
            };
            // The meniscus climbs laterally.
            let level = lung.top + lung.height * (1.0 - depth) - 0.05 * lateral.max(0.0);
            if y > level {
                lung_v = lung_v.max(0.58);
                air = air.max(inside(e * 0.9));
            }
        }
        v = v * (1.0 - air) + lung_v * air;
    }
    let mediastinum = (x - layout.cx).abs() < 0.055 && y > 0.06 && y < layout.right.top + 0.5;
    if mediastinum {
        v = v.max(0.6);
    }
    let heart = inside(ellipse(x, y, layout.heart.0, layout.heart.1));
    v = v * (1.0 - heart) + 0.66 * heart;
    // Diaphragm: bright domes below the lungs.
    let lung = if x < layout.cx {
        &layout.right
    } else {
        &layout.left
    };
    let dome = lung.top + lung.height - 0.03 + 0.08 * ((x - lung.centre.0) / lung.radii.0).powi(2);
    if y > dome + 0.02 && body > 0.5 {
        v = v.max(0.54 * body);
    }
    v * a.exposure
}

/// Renders `scene` as `size × size` grey pixels (row-major).
pub fn render(scene: &Scene, size: u32, rng: &mut impl Rng) -> Vec<u8> {
    let layout = Layout::new(scene, rng);
    let scale = 1.0 / size as f32;
    let mut pixels = Vec::with_capacity((size * size) as usize);
    for row in 0..size {
        for col in 0..size {
            let (x, y) = ((col as f32 + 0.5) * scale, (row as f32 + 0.5) * scale);
            // Film grain: uniform noise summed to a rough Gaussian.
            let noise: f32 = (0..3).map(|_| rng.gen_range(-0.012f32..0.012)).sum();
            let v = intensity(scene, &layout, x, y) + noise;
            pixels.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    pixels
}
