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
