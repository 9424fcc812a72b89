//! Raw declarations of the shim's C ABI (`shim/c10d_shim.cpp`).
//!
//! Every function that returns `*mut c_char` returns null on success, or an owned error
//! message to be released with [`arl_c10d_free_error`].

use std::os::raw::c_char;

use torch_sys::C_tensor;

/// Opaque `c10::intrusive_ptr<c10d::Store>`.
#[repr(C)]
pub(crate) struct RawStore {
    _private: [u8; 0],
}

/// Opaque `c10::intrusive_ptr<c10d::Backend>`.
#[repr(C)]
pub(crate) struct RawGroup {
    _private: [u8; 0],
}

/// Opaque overlapped gradient reducer (`shim/ddp.cpp`).
#[repr(C)]
pub(crate) struct RawDdp {
    _private: [u8; 0],
}

unsafe extern "C" {
    pub(crate) fn arl_c10d_free_error(error: *mut c_char);
    pub(crate) fn arl_c10d_init_logging() -> *mut c_char;
    pub(crate) fn arl_autocast_enter(
        device_type: i32,
        enabled: bool,
        previous: *mut bool,
    ) -> *mut c_char;
    pub(crate) fn arl_autocast_exit(device_type: i32, previous: bool) -> *mut c_char;
    pub(crate) fn arl_store_create(
        host: *const c_char,
        port: u16,
        world_size: i32,
        is_server: bool,
        timeout_ms: i64,
        out: *mut *mut RawStore,
    ) -> *mut c_char;
    pub(crate) fn arl_store_free(store: *mut RawStore);
    pub(crate) fn arl_store_check_token(
        store: *mut RawStore,
        key: *const c_char,
        token: *const c_char,
        is_server: bool,
    ) -> *mut c_char;
    pub(crate) fn arl_pg_gloo_create(
        store: *mut RawStore,
        prefix: *const c_char,
        rank: i32,
        size: i32,
        hostname: *const c_char,
        timeout_ms: i64,
        threads: i32,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    pub(crate) fn arl_pg_nccl_create(
        store: *mut RawStore,
        prefix: *const c_char,
        rank: i32,
        size: i32,
        timeout_ms: i64,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    pub(crate) fn arl_pg_free(group: *mut RawGroup);
    pub(crate) fn arl_pg_allreduce(
        group: *mut RawGroup,
        tensors: *const *mut C_tensor,
        count: usize,
        op: i32,
    ) -> *mut c_char;
    pub(crate) fn arl_pg_broadcast(
        group: *mut RawGroup,
        tensors: *const *mut C_tensor,
        count: usize,
        root: i32,
    ) -> *mut c_char;
    pub(crate) fn arl_pg_barrier(group: *mut RawGroup) -> *mut c_char;
    pub(crate) fn arl_pg_shutdown(group: *mut RawGroup) -> *mut c_char;
    pub(crate) fn arl_ddp_create(
        group: *mut RawGroup,
        params: *const *mut C_tensor,
        count: usize,
        out: *mut *mut RawDdp,
    ) -> *mut c_char;
    pub(crate) fn arl_ddp_free(ddp: *mut RawDdp);
    pub(crate) fn arl_ddp_set_buckets(
        ddp: *mut RawDdp,
        members: *const i64,
        sizes: *const i64,
        count: usize,
    ) -> *mut c_char;
    pub(crate) fn arl_ddp_zero(ddp: *mut RawDdp) -> *mut c_char;
    pub(crate) fn arl_ddp_arm(ddp: *mut RawDdp, sync: bool) -> *mut c_char;
    pub(crate) fn arl_ddp_finish(
        ddp: *mut RawDdp,
        finite: *mut u8,
        fired: *mut u8,
        order: *mut i64,
        wait_seconds: *mut f64,
    ) -> *mut c_char;
}

/// `op` of [`arl_pg_allreduce`]: element-wise sum.
pub(crate) const OP_SUM: i32 = 0;
/// `op` of [`arl_pg_allreduce`]: element-wise maximum.
pub(crate) const OP_MAX: i32 = 1;

/// Turns a shim return value into `Ok(())` or the message it carried, freeing it.
pub(crate) fn take_error(raw: *mut c_char) -> Result<(), String> {
    if raw.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string malloc'd by the shim, owned by us.
    let message = unsafe { std::ffi::CStr::from_ptr(raw) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: released exactly once, with the shim's own allocator.
    unsafe { arl_c10d_free_error(raw) };
    Err(message)
}
