//! The pipeline's results table: every fine-tune's `result.json` gathered into
//! `<run_dir>/results.json` and `<run_dir>/results.md`, laid out like the paper's tables
//! (Med-VQA open/closed/overall per dataset, Med-ITC accuracy, Med-ITR Recall@K zero-shot and
//! fine-tuned). Every row names the weights it measured, the config and the data manifests by
//! hash (the first 12 hex digits in the Markdown, whole in the JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use arl_contract::events::JobResult;
use arl_contract::metrics::{Metric, Recall};
use serde::Serialize;

fn cell(value: f64) -> String {
    format!("{value:.2}")
}

fn maybe(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), cell)
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// The hashes of a result's row: weights, config, and the test split's manifest.
fn provenance(result: &JobResult, weights: &str) -> String {
    format!(
        "`{}` | `{}` | `{}`",
        short(weights),
        short(&result.config_hash),
        short(&result.data.test)
    )
}

/// Recall@1/5/10 (%) of a random ranking over the pairs of `recall`: T2I, one gold image per
/// caption, K/images; I2T, g = texts/images gold captions per image, 1 − C(texts − g, K) /
/// C(texts, K); `None` where the captions are not spread evenly over the images.
fn chance(recall: &Recall) -> Option<([f64; 3], [f64; 3])> {
    let (images, texts) = (recall.images as u64, recall.texts as u64);
    if images == 0 || texts % images != 0 {
        return None;
    }
    let gold = texts / images;
    let at = |k: u64| {
        let t2i = k.min(images) as f64 / images as f64;
        // No gold caption among the first k of texts drawn without replacement.
        let miss: f64 = (0..k.min(texts))
            .map(|i| (texts - i).saturating_sub(gold) as f64 / (texts - i) as f64)
            .product();
        (100.0 * t2i, 100.0 * (1.0 - miss))
    };
    let [(t1, i1), (t5, i5), (t10, i10)] = [1, 5, 10].map(at);
    Some(([t1, t5, t10], [i1, i5, i10]))
}

/// The probability that `n` independent trials, each a hit with probability `p`, give at
/// least `hits` hits (the binomial upper tail), summed in log space so that large `n` neither
/// underflows nor overflows.
fn upper_tail(n: u64, p: f64, hits: u64) -> f64 {
    if hits == 0 || p >= 1.0 {
        return 1.0;
    }
    if p <= 0.0 || hits > n {
        return 0.0;
    }
    let (ln_p, ln_q) = (p.ln(), (-p).ln_1p());
    // ln C(n, x) p^x q^(n−x), stepped from x = 0.
    let mut ln_pmf = n as f64 * ln_q;
    let mut terms = Vec::new();
    for x in 0..=n {
        if x >= hits {
            terms.push(ln_pmf);
        }
        ln_pmf += ((n - x) as f64 / (x + 1) as f64).ln() + ln_p - ln_q;
    }
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln())
        .exp()
        .min(1.0)
}

/// A probability in three decimals, or in scientific notation below 0.001.
fn probability(p: f64) -> String {
    if p >= 1e-3 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

/// `recall`'s hits at K = 1, 5, 10 against a random ranking's, T2I then I2T, each cell "hits
/// (P)": under random scores every caption's (T2I) or image's (I2T) hit is an independent
/// draw with the chance row's probability, so P, the binomial probability of at least as many
/// hits, says how clearly the model beats chance.
fn against_chance(recall: &Recall) -> Option<Vec<String>> {
    let (t2i, i2t) = chance(recall)?;
    let (images, texts) = (recall.images as u64, recall.texts as u64);
    let mut cells = Vec::new();
    for (measured, chance, n) in [(recall.t2i, t2i, texts), (recall.i2t, i2t, images)] {
        for (k, chance) in chance.iter().enumerate() {
            let hits = (measured[k] * n as f64 / 100.0).round() as u64;
            let p = upper_tail(n, chance / 100.0, hits);
            cells.push(format!("{hits} ({})", probability(p)));
        }
    }
    Some(cells)
}

/// The line naming the `[model.init]` files the results' weights descend from, by sha256
/// (none when every job started from random weights).
fn model_start(results: &[(String, JobResult)]) -> String {
    let mut starts: Vec<&BTreeMap<String, String>> = results
        .iter()
        .map(|(_, r)| &r.model_init)
        .filter(|init| !init.is_empty())
        .collect();
    starts.dedup();
    starts
        .iter()
        .map(|init| {
            let files: Vec<String> = init
                .iter()
                .map(|(key, hash)| format!("{key} `{}`", short(hash)))
                .collect();
            format!(
                "\nStarted from the pretrained weights of [model.init] (sha256): {}.\n",
                files.join(", ")
            )
        })
        .collect()
}

/// The Markdown tables of `results` (job name, result), titled with `run`.
pub fn markdown(run: &str, results: &[(String, JobResult)]) -> String {
    let mut md = format!(
        "# Results of {run}\n\nAll numbers are percentages on each job's test split; `weights` is the hash of the evaluated model tensors, `config` of the job's resolved settings, `data` of the test split's manifest.\n"
    );
    md.push_str(&model_start(results));
    let vqa: Vec<_> = results
        .iter()
        .filter_map(|(name, r)| match &r.test {
            Metric::Vqa(score) => Some((name, r, score)),
            _ => None,
        })
        .collect();
    if !vqa.is_empty() {
        md.push_str("\n## Med-VQA (accuracy)\n\n| job | open | closed | overall | questions | selected | weights | config | data |\n|---|---|---|---|---|---|---|---|---|\n");
        for (name, r, score) in vqa {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} | {} |",
                maybe(score.open),
                maybe(score.closed),
                cell(score.overall),
                score.questions,
                selected(r),
                provenance(r, &r.weights)
            );
        }
    }
    let cls: Vec<_> = results
        .iter()
        .filter_map(|(name, r)| match &r.test {
            Metric::Cls { accuracy, items } => Some((name, r, *accuracy, *items)),
            _ => None,
        })
        .collect();
    if !cls.is_empty() {
        md.push_str("\n## Med-ITC (accuracy)\n\n| job | accuracy | items | selected | weights | config | data |\n|---|---|---|---|---|---|---|\n");
        for (name, r, accuracy, items) in cls {
            let _ = writeln!(
                md,
                "| {name} | {} | {items} | {} | {} |",
                cell(accuracy),
                selected(r),
                provenance(r, &r.weights)
            );
        }
    }
    let irtr: Vec<_> = results
        .iter()
        .filter_map(|(name, r)| match &r.test {
            Metric::Irtr(recall) => Some((name, r, recall)),
            _ => None,
        })
        .collect();
    if !irtr.is_empty() {
        md.push_str("\n## Med-ITR (Recall@K)\n\n| job | model | px | pairs | T2I R@1 | R@5 | R@10 | I2T R@1 | R@5 | R@10 | weights | config | data |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        let mut notes = Vec::new();
        for (name, r, test) in irtr {
            let mut rows = Vec::new();
            if let Some(Metric::Irtr(zero)) = &r.zero_shot {
                let weights = r.init.weights().unwrap_or("–");
                rows.push(("zero-shot", r.zero_shot_image_size, zero, weights));
            }
            rows.push((
                "fine-tuned",
                Some(i64::from(r.image_size)),
                test,
                r.weights.as_str(),
            ));
            if let Some((t2i, i2t)) = chance(test) {
                let cells = |r: [f64; 3]| r.map(cell).join(" | ");
                let _ = writeln!(
                    md,
                    "| {name} | chance | – | {} | {} | {} | – | – | – |",
                    test.texts,
                    cells(t2i),
                    cells(i2t)
                );
            }
            for (setting, size, recall, weights) in rows {
                if let Some(cells) = against_chance(recall) {
                    notes.push(format!(
                        "| {name} | {setting} | {} / {} | {} |",
                        recall.texts,
                        recall.images,
                        cells.join(" | ")
                    ));
                }
                let _ = writeln!(
                    md,
                    "| {name} | {setting} | {} | {} | {} | {} | {} |",
                    size.map_or_else(|| "–".to_owned(), |s| s.to_string()),
                    recall.texts,
                    recall.t2i.map(cell).join(" | "),
                    recall.i2t.map(cell).join(" | "),
                    provenance(r, weights)
                );
            }
        }
        if !notes.is_empty() {
            md.push_str("\nHits (captions for T2I, images for I2T) and, in brackets, the probability that a random ranking has at least as many:\n\n| job | model | captions / images | T2I R@1 | R@5 | R@10 | I2T R@1 | R@5 | R@10 |\n|---|---|---|---|---|---|---|---|---|\n");
            for note in &notes {
                let _ = writeln!(md, "{note}");
            }
        }
    }
    md
}

/// The selected weights in a few words: `epoch N`, or `final`.
fn selected(result: &JobResult) -> String {
    result
        .selected
        .epoch
        .map_or_else(|| "final".to_owned(), |epoch| format!("epoch {epoch}"))
}

/// `results.json`: every job's result by name.
#[derive(Serialize)]
struct Results<'a> {
    jobs: BTreeMap<&'a str, &'a JobResult>,
}

/// Writes `results.json` and `results.md` into `run_dir`; returns the Markdown.
///
/// # Errors
/// A file cannot be written (named).
pub fn write(run_dir: &Path, results: &[(String, JobResult)]) -> anyhow::Result<String> {
    let md = markdown(&run_dir.display().to_string(), results);
    let json = Results {
        jobs: results.iter().map(|(name, r)| (name.as_str(), r)).collect(),
    };
    for (name, bytes) in [
        ("results.json", serde_json::to_vec_pretty(&json)?),
        ("results.md", md.clone().into_bytes()),
    ] {
        let path = run_dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::{Value, json};

    /// A result with `fields` over neutral values of the others.
    fn result(fields: Value) -> JobResult {
        let mut all = json!({"job": "x", "section": {}, "task": "vqa", "test_split": "test",
            "val_split": "val", "zero_shot": null, "zero_shot_image_size": null,
            "image_size": 32, "selected": {"rule": "best validation epoch", "step": 4},
            "init": "scratch", "data": {"train": "t", "val": "v", "test": "cccccccccccccccc"},
            "parameters": 1, "epochs": 1, "steps": 4, "world_size": 2});
        for (key, value) in fields.as_object().unwrap() {
            all[key] = value.clone();
        }
        serde_json::from_value(all).unwrap()
    }

    #[test]
    fn the_model_init_files_are_cited_once() {
        let init = json!({"model_init": {"text": "1234567890abcdef", "vision": "fedcba0987654321"},
            "test": {"cls": {"accuracy": 50.0, "items": 4}}, "weights": "w", "config_hash": "c"});
        let rows = [
            ("a".into(), result(init.clone())),
            ("b".into(), result(init)),
        ];
        let md = markdown("runs/x", &rows);
        let line = "Started from the pretrained weights of [model.init] (sha256): text `1234567890ab`, vision `fedcba098765`.";
        assert_eq!(md.matches(line).count(), 1, "{md}");
    }

    fn recall(images: usize, texts: usize) -> Recall {
        Recall {
            i2t: [0.0; 3],
            t2i: [0.0; 3],
            images,
            texts,
        }
    }

    #[test]
    fn tables_follow_the_paper_and_cite_hashes() {
        let vqa = result(
            json!({"task": "vqa", "test": {"vqa": {"open": 50.0, "closed": null,
            "overall": 62.5, "questions": 8}},
            "selected": {"rule": "best validation epoch", "step": 4, "epoch": 2},
            "weights": "aaaaaaaaaaaaaaaa", "config_hash": "bbbbbbbbbbbbbbbb"}),
        );
        let irtr = result(
            json!({"task": "irtr", "test": {"irtr": {"t2i": [10.0, 50.0, 100.0],
            "i2t": [20.0, 60.0, 100.0], "images": 10, "texts": 10}},
            "zero_shot": {"irtr": {"t2i": [5.0, 25.0, 50.0], "i2t": [0.0, 30.0, 70.0],
            "images": 10, "texts": 10}},
            "init": {"pretrained": "p", "step": 3, "weights": "dddddddddddddddd"},
            "zero_shot_image_size": 288, "image_size": 384,
            "weights": "eeeeeeeeeeeeeeee", "config_hash": "ffff",
            "data": {"train": "t", "val": "v", "test": "9999"}}),
        );
        let md = markdown("runs/x", &[("rad".into(), vqa), ("roco".into(), irtr)]);
        assert!(md.contains("| rad | 50.00 | – | 62.50 | 8 | epoch 2 | `aaaaaaaaaaaa` | `bbbbbbbbbbbb` | `cccccccccccc` |"), "{md}");
        assert!(md.contains("| roco | zero-shot | 288 | 10 | 5.00 | 25.00 | 50.00 | 0.00 | 30.00 | 70.00 | `dddddddddddd` |"), "{md}");
        assert!(md.contains("| roco | fine-tuned | 384 | 10 | 10.00 | 50.00 | 100.00 | 20.00 | 60.00 | 100.00 | `eeeeeeeeeeee` |"), "{md}");
        assert!(
            md.contains("| roco | chance | – | 10 | 10.00 | 50.00 | 100.00 | 10.00 | 50.00 | 100.00 | – | – | – |"),
            "{md}"
        );
        assert!(!md.contains("Med-ITC"), "{md}");
        assert!(!md.contains("[model.init]"), "{md}");
        // Zero-shot T2I R@1: 0.5 × 10 rounds to 1 hit, at least one by chance 1 − 0.9^10;
        // R@5: 2.5 rounds to 3 hits (of 10 at one half each: 1 − 56/1024).
        assert!(
            md.contains("| roco | zero-shot | 10 / 10 | 1 (0.651) | 3 (0.945) | 5 (1.000) | 0 (1.000) | 3 (0.945) |"),
            "{md}"
        );
    }

    #[test]
    fn chance_tail_matches_the_binomial() {
        let close = |got: f64, want: f64| {
            assert!(
                (got - want).abs() < 1e-12 * want.max(1.0),
                "{got} vs {want}"
            )
        };
        // By hand: P(X ≥ 1) = 1 − 0.5² and P(X = 3) = 0.5³.
        close(upper_tail(2, 0.5, 1), 0.75);
        close(upper_tail(3, 0.5, 3), 0.125);
        // Exact sums of C(n, x) p^x q^(n−x) (Python's math.comb).
        close(upper_tail(50, 0.02, 4), 0.017_758_080_697_971_614);
        close(upper_tail(10, 0.1, 5), 0.001_634_937_400_000_000_7);
        // 0.5^10000 underflows a plain product; the tail at the mean is just above one half.
        close(upper_tail(10_000, 0.5, 5_000), 0.503_989_323_069_691_1);
        assert!((upper_tail(50, 0.02, 0) - 1.0).abs() < f64::EPSILON);
        assert!(upper_tail(5, 0.2, 6).abs() < f64::EPSILON);
        assert_eq!(probability(0.017_758), "0.018");
        assert_eq!(probability(2.64e-5), "2.6e-5");
    }

    #[test]
    fn chance_recall_counts_every_gold_caption() {
        let of = |images: usize, texts: usize| chance(&recall(images, texts));
        let close = |got: [f64; 3], want: [f64; 3]| {
            assert!(
                got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-9),
                "{got:?} vs {want:?}"
            );
        };
        let (t2i, i2t) = of(50, 50).unwrap();
        close(t2i, [2.0, 10.0, 20.0]);
        close(i2t, [2.0, 10.0, 20.0]);
        // Two captions per image among 4: R@1 = 1/2; R@5 is certain.
        let (t2i, i2t) = of(2, 4).unwrap();
        close(t2i, [50.0, 100.0, 100.0]);
        close(i2t, [50.0, 100.0, 100.0]);
        // 1 − C(8, 1) / C(10, 1) = 20 %; 1 − C(8, 5) / C(10, 5) = 1 − 56/252.
        close(
            of(5, 10).unwrap().1,
            [20.0, 100.0 * (1.0 - 56.0 / 252.0), 100.0],
        );
        assert_eq!(of(3, 10), None);
        assert_eq!(of(0, 0), None);
    }
}
