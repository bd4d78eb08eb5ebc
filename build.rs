//! Generates `include/k8s_disc.h` from the FFI exports, and gives the shared library its soname. The header is
//! committed; the test command fails when the committed copy differs from what this produces.

use std::path::PathBuf;

fn main() {
    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src/ffi.rs");
    println!("cargo:rerun-if-changed=src/instance.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // 0.x: every minor release may change the C ABI, so the soname carries MAJOR.MINOR (the Lua module checks
    // the same pair through k8s_disc_version()).
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,-soname,libk8s_disc.so.{}.{}",
        std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version"),
        std::env::var("CARGO_PKG_VERSION_MINOR").expect("cargo sets the version")
    );
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let header = match cbindgen::Builder::new()
        // The C API is the FFI module, plus the instance type its handle points to (opaque in C).
        .with_src(crate_dir.join("src").join("ffi.rs"))
        .with_src(crate_dir.join("src").join("instance.rs"))
        .with_config(config)
        .generate()
    {
        Ok(h) => h,
        Err(e) => {
            // A parse error is reported by rustc with better context.
            println!("cargo:warning=header not regenerated: {e}");
            return;
        }
    };
    let out = crate_dir.join("include").join("k8s_disc.h");
    // Only touch the file when the content changes, so unrelated builds leave the tree clean.
    header.write_to_file(out);
}
