//! Which platforms' images run on this machine: its own, and those a binfmt_misc handler
//! emulates (Debian's qemu-user-static registers `qemu-aarch64`, …).

use std::path::PathBuf;

/// This machine's architecture as image platforms name it (`amd64`, `arm64`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An image architecture's qemu name, and back: `arm64` ↔ `aarch64`.
const QEMU_NAMES: [(&str, &str); 3] = [("amd64", "x86_64"), ("arm64", "aarch64"), ("386", "i386")];

fn qemu_name(arch: &str) -> &str {
    QEMU_NAMES
        .iter()
        .find(|(a, _)| *a == arch)
        .map_or(arch, |(_, q)| q)
}

fn image_arch(qemu: &str) -> &str {
    QEMU_NAMES
        .iter()
        .find(|(_, q)| *q == qemu)
        .map_or(qemu, |(a, _)| a)
}

/// Where binfmt_misc is mounted: `XTASK_BINFMT_MISC`, else the usual place.
fn binfmt_dir() -> PathBuf {
    std::env::var_os("XTASK_BINFMT_MISC")
        .map_or_else(|| "/proc/sys/fs/binfmt_misc".into(), PathBuf::from)
}

fn enabled(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.lines().next() == Some("enabled"))
}

fn arch_of(platform: &str) -> &str {
    platform.split('/').nth(1).unwrap_or("")
}

/// Whether `platform` (`os/arch[/variant]`) is this machine's own.
pub fn native(platform: &str) -> bool {
    arch_of(platform) == host_arch()
}

/// Whether an image of `platform` runs here: natively, or through an enabled handler.
pub fn can_run(platform: &str) -> bool {
    native(platform)
        || enabled(&binfmt_dir().join(format!("qemu-{}", qemu_name(arch_of(platform)))))
}

/// The architectures an enabled handler emulates, as image platforms name them, sorted.
pub fn emulated() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(binfmt_dir())
        .map(|d| {
            d.flatten()
                .filter(|e| enabled(&e.path()))
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("qemu-")
                        .map(|q| image_arch(q).to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// How to make `platform` run here.
pub fn how_to_add(platform: &str) -> String {
    format!(
        "no emulator: `apt-get install qemu-user-static binfmt-support`, then `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc` (if not mounted) and `update-binfmts --enable qemu-{}`",
        qemu_name(arch_of(platform))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        assert_eq!(qemu_name("arm64"), "aarch64");
        assert_eq!(image_arch("aarch64"), "arm64");
        assert_eq!(qemu_name("s390x"), "s390x");
        assert!(native(&format!("linux/{}", host_arch())));
        assert!(how_to_add("linux/arm64").ends_with("--enable qemu-aarch64`"));
    }
}
