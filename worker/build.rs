//! Gives this package's binaries an rpath to libtorch's lib folder, so they run without
//! `LD_LIBRARY_PATH`; with feature `cuda`, keeps `libtorch_cuda` linked so CUDA registers.
//! (Shared by the `tests` package through its `build` key.)

fn main() {
    let lib = std::env::var("DEP_ARL_C10D_LIBTORCH_LIB")
        .expect("arl-c10d did not report the libtorch lib folder");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
