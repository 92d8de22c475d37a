//! The data of a simulated app in a volume: one big file of random bytes
//! (nothing compresses or dedups) that the app overwrites in place at a
//! new offset each time (no sync: it stops with its writes in the page
//! cache, as apps do), and the check that two copies hold the same bytes;
//! the sizes those benchmarks take ([`Sizes`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

const MIB: usize = 1 << 20;

/// The sizes every benchmark that moves an app's data takes (its own
/// options flatten them in).
#[derive(clap::Args)]
pub struct Sizes {
    /// Counted repetitions (medians are over them).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Size of the app's data file, MiB.
    #[arg(long, default_value_t = 1024)]
    pub data_mib: usize,
}

/// Writes `bytes` (whole MiB) of pseudo-random data from `seed` to `w`:
/// xorshift, so nothing compresses or dedups and the same seed gives the
/// same bytes. The one generator of the benchmarks' data.
pub fn fill(w: &mut impl Write, bytes: usize, seed: u64) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut block = vec![0u8; MIB];
    for _ in 0..bytes / MIB {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        w.write_all(&block).unwrap();
    }
    w.flush().unwrap();
}

/// [`fill`] into a new file.
pub fn write_file(path: &Path, bytes: usize, seed: u64) {
    let f = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    fill(&mut std::io::BufWriter::new(f), bytes, seed);
}

/// Writes `mib` MiB of [`fill`]'s data at `offset_mib` of `file`, without
/// truncating it.
pub fn write_at(file: &Path, offset_mib: usize, mib: usize, seed: u64) {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    f.seek(SeekFrom::Start((offset_mib * MIB) as u64)).unwrap();
    fill(&mut f, mib * MIB, seed);
}

/// The `k`-th write's offset in a `data_mib` file: spread over the file.
pub fn offset(k: usize, data_mib: usize, change_mib: usize) -> usize {
    (k * 97 + 13) % (data_mib - change_mib)
}

/// Whether two files hold the same bytes.
pub fn same(a: &Path, b: &Path) -> bool {
    let open = |p: &Path| File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let (mut fa, mut fb) = (open(a), open(b));
    let (mut ba, mut bb) = (vec![0u8; 4 * MIB], vec![0u8; 4 * MIB]);
    loop {
        let n = read_full(&mut fa, &mut ba);
        if n != read_full(&mut fb, &mut bb) || ba[..n] != bb[..n] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overwrite_in_place_changes_the_bytes_and_keeps_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_at(&a, 0, 4, 1);
        write_at(&b, 0, 4, 1);
        assert!(same(&a, &b));
        write_at(&b, 2, 1, 7);
        assert!(!same(&a, &b));
        assert_eq!(std::fs::metadata(&b).unwrap().len(), 4 << 20);
        assert!((0..50).all(|k| offset(k, 40, 10) + 10 <= 40));
    }
}
