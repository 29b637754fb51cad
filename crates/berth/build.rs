//! Links the berth binary with packed relative relocations (DT_RELR): the
//! 70,000 relative relocations of a position-independent binary this size
//! take about 26 KB instead of 1.7 MB, and the loader applies them faster.
//! Every `berth` command pays that at start; the run-latency benchmark counts
//! it. glibc 2.36 and binutils 2.38 are the first to support it (Debian 12
//! has 2.36 and 2.40).

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
