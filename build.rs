//! With the `tch` feature, record libtorch's library folder as the binaries' run-time search path
//! (rpath), so `simclr` and the tests start without LD_LIBRARY_PATH. The folder is found as
//! torch-sys finds it: `$LIBTORCH/lib`, or the Python torch's `lib` with LIBTORCH_USE_PYTORCH=1.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    let lib = if let Some(root) = std::env::var_os("LIBTORCH") {
        Some(std::path::PathBuf::from(root).join("lib"))
    } else if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let script = "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))";
        std::process::Command::new("python3")
            .args(["-c", script])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().into())
    } else {
        None
    };
    if let Some(lib) = lib {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
