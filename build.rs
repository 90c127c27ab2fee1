//! Build script. For now it only declares what the build depends on; the C header is
//! generated here once the C ABI exists.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
