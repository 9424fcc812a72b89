//! Compiles the c10d shim against the libtorch that torch-sys found, and exports that
//! libtorch lib folder to dependents (as `DEP_ARL_C10D_LIBTORCH_LIB`) so that their binaries
//! can carry an rpath to it.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    let lib_dir = PathBuf::from(
        env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report its libtorch lib folder"),
    );
    let include_root = match env::var("LIBTORCH_INCLUDE") {
        Ok(dir) => PathBuf::from(dir).join("include"),
        Err(_) => lib_dir.join("..").join("include"),
    };
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=shim");

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .warnings(false)
        .include("shim/gloo_stubs")
        .include(&include_root)
        .include(include_root.join("torch/csrc/api/include"))
        .define("USE_C10D_GLOO", None)
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        .file("shim/c10d_shim.cpp")
        .file("shim/ddp.cpp");
    if env::var_os("CARGO_FEATURE_NCCL").is_some() {
        add_nccl(&mut build, &lib_dir);
    }
    build.compile("arl_c10d_shim");

    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    // For this package's own test binaries; dependents add theirs (worker/build.rs).
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo:libtorch_lib={}", lib_dir.display());
}

/// NCCL and CUDA headers come from the venv's `nvidia/` wheels, beside `torch/`.
fn add_nccl(build: &mut cc::Build, lib_dir: &Path) {
    let nvidia = lib_dir.join("../../nvidia");
    build
        .define("ARL_WITH_NCCL", None)
        .define("USE_C10D_NCCL", None)
        .define("USE_CUDA", None)
        .include(nvidia.join("nccl/include"))
        .include(nvidia.join("cu13/include"));
    println!("cargo:rustc-link-lib=dylib=torch_cuda");
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
}
