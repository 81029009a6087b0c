//! With the `tch` feature: compile `src/ops/libtorch_grad.cpp` (libtorch's autograd with given
//! output gradients) and `src/ops/libtorch_optim.cpp` (PyTorch's fused and multi-tensor optimiser
//! updates), which tch does not expose, against the libtorch torch-sys links, and record
//! that libtorch's library folder as the binaries' run-time search path (rpath), so `simclr` and
//! the tests start without LD_LIBRARY_PATH. torch-sys passes the folder on as
//! `DEP_TCH_LIBTORCH_LIB` (`$LIBTORCH/lib`, or the Python torch's `lib` with
//! LIBTORCH_USE_PYTORCH=1); the headers are beside it in `include`.

fn main() {
    #[cfg(feature = "tch")]
    libtorch();
}

#[cfg(feature = "tch")]
fn libtorch() {
    let sources = ["src/ops/libtorch_grad.cpp", "src/ops/libtorch_optim.cpp"];
    for source in sources {
        println!("cargo:rerun-if-changed={source}");
    }
    let lib = std::path::PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys gives its libtorch folder"));
    let include = lib.parent().expect("libtorch's lib folder has a parent").join("include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        // Every PyTorch wheel since 2.7 uses the C++11 string ABI, as torch-sys assumes too.
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .files(sources)
        .compile("simclr_libtorch");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
