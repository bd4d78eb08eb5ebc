//! Generates `include/k8s_disc.h` from the FFI exports. The header is committed; the test command fails when the
//! committed copy differs from what this produces (see `make check-header`).

use std::path::PathBuf;

fn main() {
    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    // Any module's public constants could reach the header (cbindgen.toml excludes the internal ones).
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let header = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(h) => h,
        Err(e) => {
            // A parse error elsewhere in the crate is reported by rustc with better context.
            println!("cargo:warning=header not regenerated: {e}");
            return;
        }
    };
    let out = crate_dir.join("include").join("k8s_disc.h");
    // Only touch the file when the content changes, so unrelated builds leave the tree clean.
    header.write_to_file(out);
}
