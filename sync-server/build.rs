//! Embeds the dashboard's built assets (`ui/dist-dashboard`, made by `npm run build:dashboard`
//! in `ui/`) in the server binary, so `feltbog-server serve` needs no files beside it. Without a
//! build the server still compiles and its page says how to build the dashboard.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/dist-dashboard");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files: Vec<PathBuf> = Vec::new();
    collect(&dist, &mut files);
    files.sort();
    let mut out = String::from("/// The dashboard's files: path under the dist folder, bytes.\n");
    out.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let rel = f
            .strip_prefix(&dist)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('\\', "/");
        let abs = f.canonicalize().unwrap_or_else(|_| f.clone());
        writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .ok();
    }
    out.push_str("];\n");
    let target =
        Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("dashboard_files.rs");
    std::fs::write(target, out).unwrap_or_else(|e| panic!("writing the asset list: {e}"));
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}
