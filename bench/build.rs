//! Builds the tc impairment program (`ebpf/impair`) with nightly and bpf-linker through
//! aya-build, into OUT_DIR, where `impair` embeds it. `AYA_BUILD_SKIP=1` skips it (the
//! embedded object is then empty and attaching fails with a clear error), as in stack/build.rs.
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow::anyhow!("bench/ has no parent"))?;
    let ebpf_dir = root.join("ebpf/impair");
    let common_dir = root.join("ebpf/common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let out_dir = std::env::var("OUT_DIR")?;
    let object = Path::new(&out_dir).join("fastpath-impair");
    if std::env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v == "true")
        && !object.exists()
    {
        // Leave an empty object so include_bytes! still compiles.
        std::fs::write(&object, [])?;
    }
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "fastpath-impair-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "building the tc impairment program failed: {e:#}\n\
             It needs the nightly toolchain with rust-src and bpf-linker built for LLVM 22; \
             `cargo xtask deps` installs them."
        )
    })
}
