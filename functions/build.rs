//! The build script of each function package: its binary is linked position-dependent
//! (`-no-pie`, after rustc's own `-pie`: the last one wins) on Linux. A PIE of this size has
//! ~30,000 relative relocations that the loader applies at every cold start, writing ~110
//! copy-on-write pages: ~0.6 ms of a ~2.3 ms init (BENCHMARKS.md, "Init against a bare
//! lambda_runtime hello"). The code stays position-independent; only the binary's own image
//! loads at a fixed address (the stack, heap and shared libraries are still randomized), as Go's
//! Lambda binaries do by default. Only the bins: a crate's shared library would not link so.

fn main() {
    println!("cargo::rerun-if-changed=../build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg-bins=-no-pie");
    }
}
