//! The fuzz targets' entry points (`vigil_daemon::fuzzing`) over their seed corpus
//! (`firmware/fuzz/seeds/`, plus whatever `cargo fuzz` found and was saved there) and a fixed
//! number of deterministic mutations of each seed, so every `cargo test` repeats a small fuzz
//! campaign without libFuzzer. A panic here is a bug the fuzzer would have found.

use std::fs;
use std::path::PathBuf;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut v: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {} is missing: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "seed corpus {} is empty", dir.display());
    v
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One of libFuzzer's simpler mutations: flip a bit, set a byte to an edge value, cut, insert,
/// or copy a chunk.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let i = rng.below(d.len().max(1));
        match rng.below(6) {
            0 if !d.is_empty() => d[i] ^= 1 << rng.below(8),
            1 if !d.is_empty() => d[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            2 => d.truncate(i),
            3 => d.insert(i.min(d.len()), rng.next() as u8),
            4 if d.len() > 8 => {
                let (a, b) = (rng.below(d.len() - 4), rng.below(d.len() - 4));
                let chunk = d[a..a + 4].to_vec();
                d[b..b + 4].copy_from_slice(&chunk);
            }
            _ => {
                let j = rng.below(d.len().max(1));
                if j < d.len() {
                    let (lo, hi) = (i.min(j), i.max(j));
                    d.drain(lo..hi);
                }
            }
        }
    }
    d
}

fn campaign(target: &str, run: fn(&[u8]), per_seed: usize) {
    let mut rng = Rng(0x5eed_0000 ^ target.len() as u64);
    for (name, seed) in seeds(target) {
        run(&seed);
        for i in 0..per_seed {
            let input = mutate(&mut rng, &seed);
            let r = std::panic::catch_unwind(|| run(&input));
            if r.is_err() {
                let out = std::env::temp_dir().join(format!("vigil-fuzz-{target}-{i}"));
                let _ = fs::write(&out, &input);
                panic!(
                    "{target}: mutation {i} of {name} panicked; input saved to {}",
                    out.display()
                );
            }
        }
    }
}

#[test]
fn config_parser_survives_its_corpus() {
    campaign("config", vigil_daemon::fuzzing::config, 2000);
}

#[test]
fn outbox_journal_reader_survives_its_corpus() {
    campaign(
        "outbox_journal",
        vigil_daemon::fuzzing::outbox_journal,
        5000,
    );
}

#[test]
fn camera_frame_decoders_survive_their_corpus() {
    campaign("camera_frame", vigil_daemon::fuzzing::camera_frame, 300);
}

#[test]
fn frame_file_decoder_survives_its_corpus() {
    campaign("frame_file", vigil_daemon::fuzzing::frame_file, 2000);
}
