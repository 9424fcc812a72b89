//! Achieved model TFLOP/s and MFU (model FLOPs utilisation) of a training step: the model's
//! training FLOPs per sample ([`crate::model::flops`]) times the samples per second over all
//! ranks, divided by the ranks' peak. The peak of one device is `train.peak_tflops` when set,
//! else the vendor's datasheet figure for its GPU model and the step's arithmetic ([`PEAKS`]);
//! on the CPU, or a GPU the table does not know, it is unknown and MFU is not reported.

use std::process::Command;

use arl_contract::config::train::Precision;

/// Peak TFLOP/s of one device for each arithmetic, dense (no structured sparsity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peaks {
    /// bfloat16 on the tensor cores.
    pub bf16: f64,
    /// IEEE float32 (CUDA cores).
    pub fp32: f64,
}

/// Datasheet peaks by GPU model, and by variant where variants differ (the first row whose
/// words all appear in the device name wins, so variants come before their model's default).
/// These are the dense rates: where a datasheet quotes only the tensor-core figure with
/// sparsity, half of it. The CPU has no row: its peak depends on cores, clocks and vector units that the name
/// does not tell, so it needs `train.peak_tflops`.
pub const PEAKS: &[(&[&str], Peaks)] = &[
    // NVIDIA H100 datasheet: SXM5, PCIe and NVL columns.
    (&["h100", "pcie"], peaks(756.5, 51.0)),
    (&["h100", "nvl"], peaks(835.5, 60.0)),
    (&["h100"], peaks(989.5, 67.0)),
    // NVIDIA H200 datasheet: SXM and NVL columns.
    (&["h200", "nvl"], peaks(835.5, 60.0)),
    (&["h200"], peaks(989.5, 67.0)),
    // NVIDIA A100 datasheet (40 and 80 GB, SXM and PCIe alike).
    (&["a100"], peaks(312.0, 19.5)),
    // NVIDIA L40S, L40, L4 and A10 datasheets.
    (&["l40s"], peaks(362.05, 91.6)),
    (&["l40"], peaks(181.05, 90.5)),
    (&["l4"], peaks(121.0, 30.3)),
    (&["a10"], peaks(125.0, 31.2)),
];

const fn peaks(bf16: f64, fp32: f64) -> Peaks {
    Peaks { bf16, fp32 }
}

/// The datasheet peaks of a GPU named `name` as the driver reports it ("NVIDIA H100 80GB
/// HBM3", "NVIDIA A100-SXM4-80GB"), matched word by word, ignoring case.
pub fn datasheet(name: &str) -> Option<Peaks> {
    let lower = name.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    PEAKS
        .iter()
        .find(|(model, _)| model.iter().all(|w| words.contains(w)))
        .map(|(_, peaks)| *peaks)
}

/// The peak of the arithmetic that `precision` runs the matrix products in: bf16 under
/// autocast, else IEEE float32 (libtorch leaves TF32 off for matmuls, and this project does not
/// turn it on).
pub fn for_precision(peaks: Peaks, precision: Precision) -> f64 {
    match precision {
        Precision::Bf16 => peaks.bf16,
        Precision::Fp32 => peaks.fp32,
    }
}

/// The names of the GPUs this process may use, from `nvidia-smi` (restricted to
/// `CUDA_VISIBLE_DEVICES` when it lists indices or UUIDs); `None` when it cannot tell, or on
/// a GPU split into MIG instances (a slice has a fraction of the datasheet's peak).
pub fn visible_gpu_names() -> Option<Vec<String>> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,uuid,mig.mode.current,name",
            "--format=csv,noheader",
        ])
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    parse_gpus(&String::from_utf8_lossy(&out.stdout), visible.as_deref())
}

/// [`visible_gpu_names`] from `nvidia-smi`'s CSV lines and `CUDA_VISIBLE_DEVICES`.
fn parse_gpus(csv: &str, visible: Option<&str>) -> Option<Vec<String>> {
    let wanted: Option<Vec<&str>> = visible.map(|v| v.split(',').map(str::trim).collect());
    if wanted
        .as_ref()
        .is_some_and(|w| w.iter().any(|id| id.starts_with("MIG-")))
    {
        return None;
    }
    let mut names = Vec::new();
    for line in csv.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.splitn(4, ',').map(str::trim).collect();
        let [index, uuid, mig, name] = fields[..] else {
            return None;
        };
        let chosen = wanted
            .as_ref()
            .is_none_or(|w| w.iter().any(|id| *id == index || uuid.starts_with(id)));
        if chosen {
            if mig.eq_ignore_ascii_case("enabled") {
                return None;
            }
            names.push(name.to_owned());
        }
    }
    (!names.is_empty()).then_some(names)
}

/// The peak TFLOP/s of one device of this rank: `configured` (`train.peak_tflops`) when set,
/// else the datasheet's for the visible GPUs when they all share one row of [`PEAKS`]; `None`
/// on the CPU and wherever the table does not fit.
pub fn device_peak(
    device: tch::Device,
    precision: Precision,
    configured: Option<f64>,
) -> Option<f64> {
    if configured.is_some() {
        return configured;
    }
    if !device.is_cuda() {
        return None;
    }
    let names = visible_gpu_names()?;
    let peaks: Vec<Option<Peaks>> = names.iter().map(|n| datasheet(n)).collect();
    let first = peaks[0]?;
    if peaks.iter().any(|p| *p != Some(first)) {
        tracing::warn!(
            "no peak for MFU: the GPUs {names:?} are not all of one known model; set \
             train.peak_tflops"
        );
        return None;
    }
    Some(for_precision(first, precision))
}

/// What turns a step's samples per second into TFLOP/s and MFU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Training FLOPs (3 × forward) of one sample.
    pub flops_per_sample: f64,
    /// Peak TFLOP/s of one device, if known.
    pub peak_tflops: Option<f64>,
    /// Devices training (one per rank).
    pub devices: usize,
}

impl Throughput {
    /// Achieved TFLOP/s over all ranks at `samples_per_s` (over all ranks).
    pub fn tflops(&self, samples_per_s: f64) -> f64 {
        samples_per_s * self.flops_per_sample / 1e12
    }

    /// `tflops` over the peak of all devices.
    pub fn mfu(&self, tflops: f64) -> Option<f64> {
        self.peak_tflops
            .map(|peak| tflops / (peak * self.devices as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_find_their_datasheet_row_and_others_none() {
        let bf16 = |name: &str| datasheet(name).map(|p| p.bf16);
        assert_eq!(bf16("NVIDIA H100 80GB HBM3"), Some(989.5));
        assert_eq!(bf16("NVIDIA H100 PCIe"), Some(756.5));
        assert_eq!(bf16("NVIDIA H100 NVL"), Some(835.5));
        assert_eq!(bf16("NVIDIA H200"), Some(989.5));
        assert_eq!(bf16("NVIDIA H200 NVL"), Some(835.5));
        assert_eq!(bf16("NVIDIA A100-SXM4-80GB"), Some(312.0));
        assert_eq!(bf16("NVIDIA A100 80GB PCIe"), Some(312.0));
        assert_eq!(bf16("NVIDIA L40S"), Some(362.05));
        assert_eq!(bf16("NVIDIA L4"), Some(121.0));
        assert_eq!(bf16("NVIDIA A10"), Some(125.0));
        for unknown in [
            "NVIDIA A10G",
            "Tesla V100-SXM2-16GB",
            "NVIDIA GeForce RTX 4090",
            "",
        ] {
            assert_eq!(datasheet(unknown), None, "{unknown}");
        }
        let h100 = datasheet("NVIDIA H100 80GB HBM3").unwrap();
        assert_eq!(for_precision(h100, Precision::Fp32), 67.0);
    }

    #[test]
    fn the_cpu_has_a_peak_only_when_configured() {
        assert_eq!(device_peak(tch::Device::Cpu, Precision::Fp32, None), None);
        assert_eq!(
            device_peak(tch::Device::Cpu, Precision::Bf16, Some(2.5)),
            Some(2.5)
        );
    }

    #[test]
    fn nvidia_smi_lines_follow_cuda_visible_devices_and_refuse_mig() {
        let csv = "0, GPU-aaaa, Disabled, NVIDIA H100 80GB HBM3\n\
                   1, GPU-bbbb, Disabled, NVIDIA A100-SXM4-80GB\n";
        let names = |visible| parse_gpus(csv, visible);
        assert_eq!(names(None).unwrap().len(), 2);
        assert_eq!(names(Some("1")).unwrap(), ["NVIDIA A100-SXM4-80GB"]);
        assert_eq!(names(Some("GPU-aaaa")).unwrap(), ["NVIDIA H100 80GB HBM3"]);
        assert_eq!(names(Some("MIG-1234")), None);
        assert_eq!(
            parse_gpus("0, GPU-a, Enabled, NVIDIA H100 80GB HBM3\n", None),
            None
        );
    }

    #[test]
    fn mfu_is_tflops_over_every_devices_peak() {
        let throughput = Throughput {
            flops_per_sample: 2e12,
            peak_tflops: Some(100.0),
            devices: 4,
        };
        let tflops = throughput.tflops(50.0);
        assert_eq!(tflops, 100.0);
        assert_eq!(throughput.mfu(tflops), Some(0.25));
        let unknown = Throughput {
            peak_tflops: None,
            ..throughput
        };
        assert_eq!(unknown.mfu(tflops), None);
    }
}
