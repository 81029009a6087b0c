//! The `simclr` binary: process set-up (allocator, MPI ranks, logging, exit) around the command
//! line in [`cli`], which parses the flags, calls the library and prints what it returns.

mod cli;

use clap::Parser;
use std::io::IsTerminal;

fn main() {
    simclr::malloc::keep_freed_memory();
    // The ranks of an `mpirun`/`srun` job (MPI is finalised when `session` drops, at the end).
    let session = simclr::distributed::init();
    // Rank 0 reports; the other ranks of a distributed run only warn.
    let level = if simclr::distributed::is_writer() { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| format!("{level},hnsw_rs=warn,anndists=warn").into()))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let result = session.and_then(|session| match cli::run(cli::Cli::parse()) {
        Ok(()) => Ok(drop(session)),
        // A failed rank leaves without MPI_Finalize (which waits for every rank): its non-zero exit
        // makes the launcher stop the others.
        Err(e) => Err(e).inspect_err(|_| std::mem::forget(session)),
    });
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            let world = simclr::distributed::world();
            match world.ranks() {
                1 => eprintln!("error: {e:#}"),
                ranks => eprintln!("error on rank {} of {ranks}: {e:#}", world.rank()),
            }
            1
        }
    };
    exit_now(code)
}

/// Ends the process with `code`, stdout and stderr flushed, without the static destructors of the
/// C++ libraries linked in: in a build with libtorch and a Vulkan backend, libtorch's destructors
/// ran while Mesa's lavapipe was still tearing down its shader compiler threads, and the process
/// crashed (SIGSEGV in `free`) after its work was done and reported — 2 exits in 8 on an error path
/// right after the first shaders were built. Everything of ours is written and closed by then.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `_exit` ends the process at once; nothing of this process runs after it.
    unsafe {
        libc::_exit(code)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    std::process::exit(code)
}
