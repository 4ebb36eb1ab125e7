//! Release builds of `holdfast` ask the linker to place the functions a run executes side by side,
//! in the order of `link-order.txt`, so the kernel maps a few MiB of code instead of 64 KiB windows
//! scattered over the whole text (docs/benchmarks.md, "Link order"). Only LLD takes the list: it is
//! passed when rustc links with its own LLD (x86_64 Linux from 1.90 on) and no other linker is set.
//! `make link-order` regenerates the list; `HOLDFAST_LINK_ORDER=0` leaves it out.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("link-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=HOLDFAST_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let enabled = env::var("HOLDFAST_LINK_ORDER").as_deref() != Ok("0");
    if release && enabled && order.is_file() && links_with_rust_lld() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        // The link arguments name the file, not its content: a digest of the content, passed as a
        // compile-time variable, makes cargo relink when only the list changed.
        if let Ok(list) = std::fs::read(&order) {
            println!(
                "cargo:rustc-env=HOLDFAST_LINK_ORDER_DIGEST={:016x}",
                fnv1a(&list)
            );
        }
    }
}

/// 64-bit FNV-1a: enough to tell two versions of the list apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether rustc links this build with the LLD it ships: its default on x86_64 Linux since 1.90
/// (the workspace needs 1.94) when the toolchain has it and the build names no other linker.
fn links_with_rust_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("link"))
    {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    Command::new(rustc)
        .arg("--print=sysroot")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| {
            Path::new(String::from_utf8_lossy(&o.stdout).trim())
                .join("lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld")
                .is_file()
        })
}
