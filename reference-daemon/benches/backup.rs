//! Backup and restore of a 1 GB server directory through the daemon's [`BackupStore`] on the
//! local disk (`file://` store), against `tar -I zstd -cf` and `tar -I zstd -xf` of the same
//! directory, in the same run.
//!
//! The directory: many small text files (25,000 of 1–15 KiB, ~200 MB), MB-sized
//! compressible files (50 × 8 MiB of log-like text) and incompressible ones (34 × 12 MiB of
//! random bytes), ~1 GB in all (`NEXUS_BENCH_BACKUP_MB` scales it).
//!
//! Fairness: both sides compress with zstd level 3 (tar's default through the `zstd` tool)
//! and with compression on one worker thread of its own (the tool's default `-T1`; ours
//! `multithread(1)`, with 2 MiB jobs); both read a warm page cache (the directory was just
//! written); before every phase dirty pages are written out and the machine gets 2 s to settle
//! (a deleted tree's blocks are freed after `rm` returned); which side goes first alternates between rounds;
//! each side runs in a process of its own (ours: this binary, re-run for one phase, the
//! daemon's runtime: one thread, file work on the blocking pool), timed and its CPU counted
//! the same way; the medians are reported. Ours does more: it computes the archive's SHA-256,
//! writes it through the object store (a staging file renamed at the end) and checks its
//! size; a restore stages next to the root, checks the hash, then swaps directories.
//! Restores go into an empty server directory, as tar extracts into an empty one; one more
//! restore replaces the full directory (its old tree removed), for reference.
//!
//! Peak RSS is the `VmHWM` of the process running the phase: the backup and the restore
//! must stay flat whatever the directory's size (compare `NEXUS_BENCH_BACKUP_MB=256`).
//!
//! On a virtual machine whose memory the host backs lazily, the first write to a page never
//! used before is slow, and lands on whichever side happens to need new memory (page cache
//! included); `NEXUS_BENCH_WARM_MB` (default 6144) MiB are touched once before the phases.
//!
//! ```sh
//! cargo bench -p nexus-wings --bench backup
//! NEXUS_BENCH_BACKUP_MB=256 NEXUS_BENCH_ROUNDS=1 cargo bench -p nexus-wings --bench backup
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "benchmark binary: fail loudly")]

use nexus_core::ids::{BackupId, ServerId};
use nexus_files::{FilesConfig, ServerFiles};
use nexus_templates::ObjectStoreConfig;
use nexus_wings::backup::{BackupStore, RetryPolicy, backup_limits};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// xorshift64*: fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "spawn",
    "chunk",
    "player",
    "joined",
    "the",
    "game",
    "saving",
    "world",
    "region",
    "entity",
    "tick",
    "server",
    "lag",
    "warn",
    "info",
    "config",
    "true",
    "false",
    "level",
    "seed",
    "mob",
    "block",
    "item",
    "inventory",
];

fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes());
        out.push(if rng.next() % 12 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn log_lines(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut t = 0u64;
    while out.len() < len {
        t += rng.next() % 900;
        let line = format!(
            "[{:02}:{:02}:{:02}] [Server thread/INFO]: {} {} at x={} z={}\n",
            t / 3_600_000 % 24,
            t / 60_000 % 60,
            t / 1000 % 60,
            WORDS[(rng.next() % WORDS.len() as u64) as usize],
            WORDS[(rng.next() % WORDS.len() as u64) as usize],
            rng.next() % 10_000,
            rng.next() % 10_000
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

/// Writes the mixed directory (`scale` = 1.0 for ~1 GB); returns its bytes.
fn generate(root: &Path, scale: f64) -> u64 {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut total = 0u64;
    for i in 0..(25_000.0 * scale) as usize {
        let dir = root.join(format!("plugins/p{:03}/data{}", i % 250, i % 7));
        std::fs::create_dir_all(&dir).unwrap();
        let len = 1024 + (rng.next() % (14 * 1024)) as usize;
        let data = text(&mut rng, len);
        total += data.len() as u64;
        std::fs::write(dir.join(format!("f{i}.yml")), data).unwrap();
    }
    std::fs::create_dir_all(root.join("logs")).unwrap();
    for i in 0..((50.0 * scale) as usize).max(1) {
        let data = log_lines(&mut rng, 8 << 20);
        total += data.len() as u64;
        std::fs::write(root.join(format!("logs/server-{i}.log")), data).unwrap();
    }
    std::fs::create_dir_all(root.join("world/region")).unwrap();
    let mut data = vec![0u8; 12 << 20];
    for i in 0..((34.0 * scale) as usize).max(1) {
        rng.fill(&mut data);
        total += data.len() as u64;
        std::fs::write(root.join(format!("world/region/r.{i}.0.mca")), &data).unwrap();
    }
    total
}

/// Regular files below `dir`.
fn count_files(dir: &Path) -> u64 {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            count += count_files(&entry.path());
        } else if kind.is_file() {
            count += 1;
        }
    }
    count
}

/// A `kB` field of `/proc/self/status`, bytes.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// CPU seconds of the children this process waited for (`cutime + cstime`).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest.split(' ').map(|f| f.parse().unwrap_or(0)).collect();
    // cutime and cstime are fields 16 and 17, i.e. 13 and 14 here.
    (fields[13] + fields[14]) as f64 / rustix::param::clock_ticks_per_second() as f64
}

/// Before every timed phase: dirty pages written out, and a moment for what the previous
/// phase left to the kernel (freeing a deleted tree's blocks goes on after `rm` returned),
/// so that neither side pays for the other's aftermath.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _ = Command::new("sync").status();
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn fresh_dir(path: &Path) {
    if path.exists() {
        std::fs::remove_dir_all(path).unwrap();
    }
    std::fs::create_dir_all(path).unwrap();
}

/// What a phase run in a child reports on its last line: seconds, peak RSS, and for a
/// backup its archive's size and checksum.
struct Report {
    seconds: f64,
    peak_rss: u64,
    bytes: u64,
    checksum: String,
}

/// Runs one of our phases in a child process of this binary (`NEXUS_BENCH_PHASE` and its
/// arguments in the environment); its time, its CPU (as a waited-for child) and what it
/// printed.
fn run_phase(phase: &str, vars: &[(&str, String)]) -> (Report, f64) {
    settle();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.arg("--bench").env("NEXUS_BENCH_PHASE", phase);
    for (name, value) in vars {
        command.env(name, value);
    }
    let before = children_cpu();
    let output = command.output().unwrap();
    let cpu = children_cpu() - before;
    assert!(output.status.success(), "phase {phase} failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().rev().find_map(|l| l.strip_prefix("PHASE ")).unwrap();
    let parts: Vec<&str> = line.split(' ').collect();
    let report = Report {
        seconds: parts[0].parse().unwrap(),
        peak_rss: parts[1].parse().unwrap(),
        bytes: parts[2].parse().unwrap(),
        checksum: parts[3].to_owned(),
    };
    (report, cpu)
}

/// Runs `tar` (with `zstd` under it); its time and CPU.
fn run_tar(args: &[&std::ffi::OsStr]) -> (f64, f64) {
    settle();
    let before = children_cpu();
    let started = Instant::now();
    let status = Command::new("tar").args(args).status().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "tar {args:?} failed");
    (seconds, children_cpu() - before)
}

/// The child side: one backup, discarding write, or restore, in the daemon's runtime.
fn child(phase: &str) {
    let var = |name: &str| std::env::var(name).unwrap();
    let root = PathBuf::from(var("NEXUS_BENCH_ROOT"));
    let server: ServerId = var("NEXUS_BENCH_SERVER").parse().unwrap();
    let backup: BackupId = var("NEXUS_BENCH_BACKUP").parse().unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(32).build().unwrap();
    let store = ObjectStoreConfig::local(Path::new(&var("NEXUS_BENCH_STORE"))).open().unwrap();
    let backups = BackupStore::new(store, RetryPolicy::default());
    let config = FilesConfig { archive_limits: backup_limits(0), ..FilesConfig::default() };
    let (seconds, bytes, checksum) = tokio.block_on(async {
        let files = ServerFiles::open(&root, config).await.unwrap();
        let started = Instant::now();
        match phase {
            "backup" => {
                let created = backups.create(&files, server, backup, &[]).await.unwrap();
                (started.elapsed(), created.bytes, created.checksum_hex())
            }
            "discard" => {
                let summary = files.write_backup(tokio::io::sink(), &[]).await.unwrap();
                (started.elapsed(), summary.archive_bytes, "-".into())
            }
            "restore" => {
                let checksum = var("NEXUS_BENCH_CHECKSUM");
                backups.restore(&files, server, backup, &checksum, true).await.unwrap();
                (started.elapsed(), 0, "-".into())
            }
            other => panic!("unknown phase {other}"),
        }
    });
    println!("PHASE {} {} {bytes} {checksum}", seconds.as_secs_f64(), status_kb("VmHWM:"));
}

#[derive(Default)]
struct Phase {
    seconds: Vec<f64>,
    cpu: Vec<f64>,
    peak_rss: u64,
}

impl Phase {
    fn add(&mut self, seconds: f64, cpu: f64, peak_rss: u64) {
        self.seconds.push(seconds);
        self.cpu.push(cpu);
        self.peak_rss = self.peak_rss.max(peak_rss);
    }

    fn median(values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn time(&self) -> f64 {
        Self::median(&self.seconds)
    }
}

fn main() {
    if let Ok(phase) = std::env::var("NEXUS_BENCH_PHASE") {
        return child(&phase);
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("backup benchmark: run `cargo bench -p nexus-wings --bench backup`");
        return;
    }
    let size_mb: f64 = env_or("NEXUS_BENCH_BACKUP_MB", 1024.0);
    let rounds: usize = env_or("NEXUS_BENCH_ROUNDS", 5);
    let base = std::env::var_os("NEXUS_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let work = tempfile::tempdir_in(base).unwrap();
    let volumes = work.path().join("volumes");
    let server = ServerId::new();
    let root = volumes.join(server.to_string());
    std::fs::create_dir_all(&root).unwrap();
    let started = Instant::now();
    let bytes = generate(&root, size_mb / 1024.0);
    let count = count_files(&root);
    println!("directory: {:.0} MiB in {count} files, written in {:.1} s", mib(bytes), started.elapsed().as_secs_f64());

    // Virtual machines often back their memory lazily: the first touch of a page costs a
    // trip to the host, paid by whichever side writes to memory never used before (page cache
    // included). Touched once here, freed pages are warm for both sides.
    let warm_mb: usize = env_or("NEXUS_BENCH_WARM_MB", 6144);
    if warm_mb > 0 {
        let started = Instant::now();
        let mut chunks = Vec::new();
        for _ in 0..warm_mb / 64 {
            let mut chunk = vec![0u8; 64 << 20];
            for page in chunk.chunks_mut(4096) {
                page[0] = 1;
            }
            chunks.push(chunk);
        }
        drop(chunks);
        println!("memory warmed: {warm_mb} MiB in {:.1} s", started.elapsed().as_secs_f64());
    }

    let store_dir = work.path().join("store");
    let tar_archive = work.path().join("tar.tar.zst");
    let tar_out = work.path().join("tar-out");
    let empty_root = volumes.join(ServerId::new().to_string());
    let vars = |root: &Path, backup: BackupId| {
        vec![
            ("NEXUS_BENCH_ROOT", root.display().to_string()),
            ("NEXUS_BENCH_STORE", store_dir.display().to_string()),
            ("NEXUS_BENCH_SERVER", server.to_string()),
            ("NEXUS_BENCH_BACKUP", backup.to_string()),
        ]
    };
    let archive_of = |backup: BackupId| store_dir.join(server.to_string()).join(format!("{backup}.tar.zst"));

    let (mut tar_backup, mut our_backup, mut discard) = (Phase::default(), Phase::default(), Phase::default());
    let (mut tar_restore, mut our_restore) = (Phase::default(), Phase::default());
    let mut sizes = (0u64, 0u64);
    let mut last: Option<(BackupId, String)> = None;
    #[derive(Clone, Copy)]
    enum Step {
        TarBackup,
        OurBackup,
        TarRestore,
        OurRestore,
    }
    for round in 0..rounds {
        // Who goes first alternates; each restore's output is removed right after it, so
        // both sides write into memory of the same history.
        let order = if round % 2 == 0 {
            [Step::TarBackup, Step::OurBackup, Step::TarRestore, Step::OurRestore]
        } else {
            [Step::OurBackup, Step::TarBackup, Step::OurRestore, Step::TarRestore]
        };
        for step in order {
            match step {
                Step::TarBackup => {
                    let _ = std::fs::remove_file(&tar_archive);
                    let (seconds, cpu) = run_tar(&[
                        "-I".as_ref(),
                        "zstd".as_ref(),
                        "-cf".as_ref(),
                        tar_archive.as_os_str(),
                        "-C".as_ref(),
                        root.as_os_str(),
                        ".".as_ref(),
                    ]);
                    tar_backup.add(seconds, cpu, 0);
                    sizes.0 = std::fs::metadata(&tar_archive).unwrap().len();
                }
                Step::OurBackup => {
                    // As tar's archive is removed before tar runs, the previous backup goes first.
                    if let Some((old, _)) = last.take() {
                        std::fs::remove_file(archive_of(old)).unwrap();
                    }
                    let backup = BackupId::new();
                    let (report, cpu) = run_phase("backup", &vars(&root, backup));
                    our_backup.add(report.seconds, cpu, report.peak_rss);
                    sizes.1 = report.bytes;
                    assert_eq!(std::fs::metadata(archive_of(backup)).unwrap().len(), report.bytes);
                    last = Some((backup, report.checksum));
                    // The archiving alone: no hash, no store.
                    let (report, cpu) = run_phase("discard", &vars(&root, backup));
                    discard.add(report.seconds, cpu, report.peak_rss);
                }
                Step::TarRestore => {
                    fresh_dir(&tar_out);
                    let (seconds, cpu) = run_tar(&[
                        "-I".as_ref(),
                        "zstd".as_ref(),
                        "-xf".as_ref(),
                        tar_archive.as_os_str(),
                        "-C".as_ref(),
                        tar_out.as_os_str(),
                    ]);
                    tar_restore.add(seconds, cpu, 0);
                    fresh_dir(&tar_out);
                }
                Step::OurRestore => {
                    fresh_dir(&empty_root);
                    let (backup, checksum) = last.clone().unwrap();
                    let mut vars = vars(&empty_root, backup);
                    vars.push(("NEXUS_BENCH_CHECKSUM", checksum));
                    let (report, cpu) = run_phase("restore", &vars);
                    our_restore.add(report.seconds, cpu, report.peak_rss);
                    assert_eq!(count_files(&empty_root), count, "the restore has every file");
                    fresh_dir(&empty_root);
                }
            }
        }
        println!(
            "round {}: tar -cf {:.2} s, backup {:.2} s; tar -xf {:.2} s, restore {:.2} s",
            round + 1,
            tar_backup.seconds[round],
            our_backup.seconds[round],
            tar_restore.seconds[round],
            our_restore.seconds[round]
        );
    }
    // Restored over the full directory: stage, swap, remove the old tree.
    let (backup, checksum) = last.unwrap();
    let mut vars = vars(&root, backup);
    vars.push(("NEXUS_BENCH_CHECKSUM", checksum));
    let (over_full, over_full_cpu) = run_phase("restore", &vars);
    assert_eq!(count_files(&root), count, "the restored directory has every file");

    println!();
    println!("{:<40} {:>9} {:>7} {:>10} {:>11}", "phase (median of the rounds)", "time", "MiB/s", "CPU", "peak RSS");
    let row = |name: &str, seconds: f64, cpu: f64, rss: Option<u64>| {
        let rss = rss.map_or_else(|| "(2 procs)".to_owned(), |r| format!("{:.1} MiB", mib(r)));
        println!("{name:<40} {seconds:>7.2} s {:>7.0} {cpu:>8.2} s {rss:>11}", mib(bytes) / seconds);
    };
    row("tar -I zstd -cf", tar_backup.time(), Phase::median(&tar_backup.cpu), None);
    row(
        "backup (BackupStore, file:// store)",
        our_backup.time(),
        Phase::median(&our_backup.cpu),
        Some(our_backup.peak_rss),
    );
    row(
        "  its write_backup into a discarding sink",
        discard.time(),
        Phase::median(&discard.cpu),
        Some(discard.peak_rss),
    );
    row("tar -I zstd -xf (into an empty dir)", tar_restore.time(), Phase::median(&tar_restore.cpu), None);
    row(
        "restore (into an empty server dir)",
        our_restore.time(),
        Phase::median(&our_restore.cpu),
        Some(our_restore.peak_rss),
    );
    row("restore (over the full dir, one run)", over_full.seconds, over_full_cpu, Some(over_full.peak_rss));
    println!();
    println!("backup / tar -cf:  {:.2}x (goal <= 1.2)", our_backup.time() / tar_backup.time());
    println!("restore / tar -xf: {:.2}x (goal <= 1.2)", our_restore.time() / tar_restore.time());
    println!(
        "archive: ours {:.1} MiB, tar's {:.1} MiB ({:.3} of the directory's size)",
        mib(sizes.1),
        mib(sizes.0),
        sizes.1 as f64 / bytes as f64
    );
    if std::env::var_os("NEXUS_BENCH_KEEP").is_some() {
        println!("kept: {} (server {server}, backup {backup})", work.keep().display());
    }
}
