//! A synthetic chest radiograph's scene: the patient's anatomy and which findings it shows,
//! drawn from a seeded generator so that a scene index and a seed always give the same scene.

use rand::Rng;

use crate::convert::mimic::CHEXPERT_COLUMNS;

/// The patient's side (on the image, the patient's right is on the viewer's left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Patient's left.
    Left,
    /// Patient's right.
    Right,
    /// Both sides.
    Bilateral,
}

impl Side {
    /// The word.
    pub fn word(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Right => "right",
            Self::Bilateral => "bilateral",
        }
    }

    /// Left or right, evenly.
    fn one(rng: &mut impl Rng) -> Self {
        if rng.gen_bool(0.5) {
            Self::Left
        } else {
            Self::Right
        }
    }
}

/// A finding's extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Small.
    Small,
    /// Moderate.
    Moderate,
    /// Large.
    Large,
}

impl Size {
    /// The word.
    pub fn word(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Moderate => "moderate",
            Self::Large => "large",
        }
    }
}

/// A lung zone (the lobe is the zone on a side; the left lung has no middle lobe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// Upper.
    Upper,
    /// Middle (right lung only).
    Middle,
    /// Lower.
    Lower,
}

impl Zone {
    /// The word.
    pub fn word(self) -> &'static str {
        match self {
            Self::Upper => "upper",
            Self::Middle => "middle",
            Self::Lower => "lower",
        }
    }

    /// A zone of `side`'s lung.
    fn of(side: Side, rng: &mut impl Rng) -> Self {
        match (side, rng.gen_range(0..3)) {
            (_, 0) => Self::Upper,
            (Side::Right, 1) => Self::Middle,
            _ => Self::Lower,
        }
    }
}

/// A place in one lung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lobe {
    /// Left or right.
    pub side: Side,
    /// Zone.
    pub zone: Zone,
}

impl Lobe {
    /// "right upper lobe".
    pub fn words(self) -> String {
        format!("{} {} lobe", self.side.word(), self.zone.word())
    }

    fn draw(rng: &mut impl Rng) -> Self {
        let side = Side::one(rng);
        Self {
            side,
            zone: Zone::of(side, rng),
        }
    }
}

/// A pulmonary nodule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nodule {
    /// Where.
    pub lobe: Lobe,
    /// Diameter in mm (6–30).
    pub size_mm: u32,
    /// Position inside the zone, 0–1 across and down.
    pub offset: (f32, f32),
}

/// The patient's build, varied per scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anatomy {
    /// Thorax half-width, fraction of the image.
    pub thorax: f32,
    /// Lung height, fraction of the image.
    pub lung_height: f32,
    /// Heart width over thorax width (normal below 0.5).
    pub cardiothoracic_ratio: f32,
    /// Overall exposure (multiplies intensities).
    pub exposure: f32,
    /// Horizontal shift of the patient, fraction of the image.
    pub shift: f32,
}

/// One scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Build.
    pub anatomy: Anatomy,
    /// Enlarged heart.
    pub cardiomegaly: bool,
    /// Pleural effusion: side (or bilateral) and size.
    pub effusion: Option<(Side, Size)>,
    /// Pneumothorax side.
    pub pneumothorax: Option<Side>,
    /// Nodules (0–3).
    pub nodules: Vec<Nodule>,
    /// Atelectasis.
    pub atelectasis: Option<Lobe>,
    /// Pulmonary edema (bilateral, perihilar).
    pub edema: bool,
    /// Consolidation.
    pub consolidation: Option<Lobe>,
}

/// The findings, in the order of primacy for the classification task.
pub const FINDINGS: [&str; 8] = [
    "pneumothorax",
    "pleural effusion",
    "consolidation",
    "pulmonary edema",
    "cardiomegaly",
    "atelectasis",
    "pulmonary nodule",
    "normal",
];

impl Scene {
    /// Draws a scene: about one in four is normal, others have one or more findings.
    pub fn draw(rng: &mut impl Rng) -> Self {
        let normal = rng.gen_bool(0.25);
        // An abnormal scene's findings are drawn again until it has one.
        let [
            cardiomegaly,
            has_effusion,
            has_ptx,
            has_nodules,
            has_atelectasis,
            edema,
            has_consolidation,
        ] = loop {
            let mut p = |prob: f64| !normal && rng.gen_bool(prob);
            let found = [p(0.3), p(0.3), p(0.15), p(0.2), p(0.2), p(0.15), p(0.2)];
            if normal || found.contains(&true) {
                break found;
            }
        };
        let cardiothoracic_ratio = if cardiomegaly {
            rng.gen_range(0.56..0.68)
        } else {
            rng.gen_range(0.38..0.47)
        };
        let anatomy = Anatomy {
            thorax: rng.gen_range(0.34..0.40),
            lung_height: rng.gen_range(0.50..0.58),
            cardiothoracic_ratio,
            exposure: rng.gen_range(0.9..1.1),
            shift: rng.gen_range(-0.02..0.02),
        };
        let effusion = has_effusion.then(|| {
            let side = match rng.gen_range(0..5) {
                0 => Side::Bilateral,
                1 | 2 => Side::Left,
                _ => Side::Right,
            };
            let size = [Size::Small, Size::Moderate, Size::Large][rng.gen_range(0..3)];
            (side, size)
        });
        let pneumothorax = has_ptx.then(|| Side::one(rng));
        let count = if has_nodules { rng.gen_range(1..=3) } else { 0 };
        let nodules = (0..count)
            .map(|_| Nodule {
                lobe: Lobe::draw(rng),
                size_mm: rng.gen_range(6..=30),
                offset: (rng.gen_range(0.2..0.8), rng.gen_range(0.2..0.8)),
            })
            .collect();
        let atelectasis = has_atelectasis.then(|| Lobe {
            side: Side::one(rng),
            zone: Zone::Lower,
        });
        let consolidation = has_consolidation.then(|| Lobe::draw(rng));
        Self {
            anatomy,
            cardiomegaly,
            effusion,
            pneumothorax,
            nodules,
            atelectasis,
            edema,
            consolidation,
        }
    }

    /// Whether finding `name` (one of [`FINDINGS`], not "normal") is present.
    pub fn has(&self, name: &str) -> bool {
        match name {
            "pneumothorax" => self.pneumothorax.is_some(),
            "pleural effusion" => self.effusion.is_some(),
            "consolidation" => self.consolidation.is_some(),
            "pulmonary edema" => self.edema,
            "cardiomegaly" => self.cardiomegaly,
            "atelectasis" => self.atelectasis.is_some(),
            "pulmonary nodule" => !self.nodules.is_empty(),
            _ => false,
        }
    }

    /// The scene's 14 CheXpert values (1 positive, 0 otherwise) in the column order of
    /// MIMIC-CXR's `chexpert.csv`: atelectasis, cardiomegaly, consolidation, edema, enlarged
    /// cardiomediastinum, fracture, lung lesion, lung opacity, no finding, pleural effusion,
    /// pleural other, pneumonia, pneumothorax, support devices.
    pub fn chexpert(&self) -> Vec<i64> {
        let normal = !FINDINGS.iter().any(|f| self.has(f));
        let opacity = self.consolidation.is_some() || self.atelectasis.is_some() || self.edema;
        let values: [bool; CHEXPERT_COLUMNS] = [
            self.atelectasis.is_some(),
            self.cardiomegaly,
            self.consolidation.is_some(),
            self.edema,
            false,
            false,
            !self.nodules.is_empty(),
            opacity,
            normal,
            self.effusion.is_some(),
            false,
            false,
            self.pneumothorax.is_some(),
            false,
        ];
        values.map(i64::from).to_vec()
    }

    /// The class of the classification task: the first present finding of [`FINDINGS`].
    pub fn primary(&self) -> usize {
        FINDINGS
            .iter()
            .position(|f| self.has(f))
            .unwrap_or(FINDINGS.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn about_one_scene_in_four_is_normal_and_the_others_have_a_finding() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let n = 4000;
        let normal = (0..n)
            .filter(|_| Scene::draw(&mut rng).primary() == FINDINGS.len() - 1)
            .count();
        // 1,000 expected; the binomial's standard deviation is about 27.
        assert!(
            (900..1100).contains(&normal),
            "{normal} normal scenes of {n}"
        );
    }
}
