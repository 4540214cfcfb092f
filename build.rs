//! Build-time facts for `imgferry --version`: the git commit the binary was built from (when it
//! was built from a checkout) and the target triple, as `rustc -vV` and `rclone version` show.

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown (not built from a git checkout)".into());
    println!("cargo:rustc-env=IMGFERRY_COMMIT={commit}");
    println!(
        "cargo:rustc-env=IMGFERRY_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    // Rebuilt when the checkout moves to another commit; a path that does not exist would make
    // cargo run this script on every build, so only existing ones are named.
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
