// Migrations are embedded with `embed_migrations!`; rebuild when they change.
//
// `PAGES_DIGEST` names what the templates and the stylesheet make of a value: the public pages'
// validators carry it (`views::http_cache`), so that a release that changes how a page looks
// does not answer 304 to a browser holding the old release's page of the same data.
use std::hash::Hasher;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=static");
    let mut files = Vec::new();
    for dir in ["templates", "static"] {
        collect(Path::new(dir), &mut files);
    }
    files.sort();
    // FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
    let mut digest = Fnv(0xcbf2_9ce4_8422_2325);
    for file in &files {
        digest.write(file.to_string_lossy().as_bytes());
        digest.write(&std::fs::read(file).unwrap_or_default());
    }
    println!("cargo:rustc-env=PAGES_DIGEST={:016x}", digest.finish());
    embed_static();
}

/// `OUT_DIR/static_files.rs`: every file under static/ as `(path, bytes, etag)`, so the binary
/// serves its stylesheet from any directory (`views::assets`).
fn embed_static() {
    let mut files = Vec::new();
    collect(Path::new("static"), &mut files);
    files.sort();
    let root = std::env::current_dir().unwrap_or_default();
    let mut out = String::from("pub const FILES: &[(&str, &[u8], &str)] = &[\n");
    for file in &files {
        let relative = file.strip_prefix("static").unwrap_or(file);
        let name = relative.to_string_lossy().replace('\\', "/");
        let mut digest = Fnv(0xcbf2_9ce4_8422_2325);
        digest.write(&std::fs::read(file).unwrap_or_default());
        out.push_str(&format!(
            "    ({name:?}, include_bytes!({:?}), \"\\\"{:016x}\\\"\"),\n",
            root.join(file).display().to_string(),
            digest.finish()
        ));
    }
    out.push_str("];\n");
    let out_dir = std::env::var("OUT_DIR").unwrap_or_default();
    let _ = std::fs::write(Path::new(&out_dir).join("static_files.rs"), out);
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
