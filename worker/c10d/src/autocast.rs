//! bfloat16 autocast on the CPU as on CUDA, through the shim: tch's `autocast` switches
//! CUDA's only, and to float16.

use tch::Device;

use crate::error::{C10dError, Result};
use crate::ffi;

/// Runs `f` with bfloat16 autocast on `device`'s type switched on or off (`enabled`), as
/// `torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)` does; the previous
/// state comes back afterwards, and the outermost scope frees the cast weights it cached.
///
/// # Errors
/// A device other than the CPU or CUDA, or libtorch refusing the setting.
pub fn autocast_bf16<T>(device: Device, enabled: bool, f: impl FnOnce() -> T) -> Result<T> {
    let device_type = match device {
        Device::Cpu => 0,
        Device::Cuda(_) => 1,
        other => {
            return Err(C10dError::Op {
                op: "bfloat16 autocast".into(),
                rank: -1,
                message: format!("autocast runs on the CPU or CUDA, not {other:?}"),
            });
        }
    };
    let op_error = |message| C10dError::Op {
        op: "bfloat16 autocast".into(),
        rank: -1,
        message,
    };
    let mut previous = false;
    // SAFETY: `previous` outlives the call; the shim catches every exception.
    ffi::take_error(unsafe { ffi::arl_autocast_enter(device_type, enabled, &raw mut previous) })
        .map_err(op_error)?;
    let result = f();
    // SAFETY: plain values; the shim catches every exception.
    ffi::take_error(unsafe { ffi::arl_autocast_exit(device_type, previous) }).map_err(op_error)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use tch::{Kind, Tensor};

    use super::*;

    #[test]
    fn cpu_matmuls_run_in_bfloat16_inside_and_float_outside() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let inside = autocast_bf16(Device::Cpu, true, || a.matmul(&a)).unwrap();
        assert_eq!(inside.kind(), Kind::BFloat16);
        let nested = autocast_bf16(Device::Cpu, true, || {
            autocast_bf16(Device::Cpu, false, || a.matmul(&a)).unwrap()
        })
        .unwrap();
        assert_eq!(nested.kind(), Kind::Float, "an inner scope switches it off");
        assert_eq!(a.matmul(&a).kind(), Kind::Float, "the state is restored");
    }
}
