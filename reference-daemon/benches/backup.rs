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
//! `multithread(1)`), both read a warm page cache (the directory was just written), `sync`
//! runs before every phase, rounds alternate and the medians are reported. Ours does more:
//! it computes the archive's SHA-256, writes it through the object store (a staging file
//! renamed at the end) and checks its size; a restore stages next to the root, checks the
//! hash, then swaps directories. Restores go into an empty server directory, as tar extracts
//! into an empty one; one more restore replaces the full directory (its old tree removed),
//! for reference.
//!
//! Peak RSS is the process's `VmHWM`, reset before each phase (`/proc/self/clear_refs`): the
//! backup and the restore must stay flat whatever the directory's size.
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
use std::time::{Duration, Instant};

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
    let small = (25_000.0 * scale) as usize;
    for i in 0..small {
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

/// CPU seconds used so far: (this process, all threads; its waited-for children), from
/// `/proc/self/stat`.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest.split(' ').map(|f| f.parse().unwrap_or(0)).collect();
    let tick = rustix::param::clock_ticks_per_second() as f64;
    // utime, stime, cutime, cstime are fields 14..=17, i.e. 11..=14 here.
    ((fields[11] + fields[12]) as f64 / tick, (fields[13] + fields[14]) as f64 / tick)
}

/// Peak resident memory since the last reset, bytes.
fn peak_rss() -> u64 {
    status_kb("VmHWM:")
}

fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset VmHWM ({e}); peaks are since the start");
    }
}

fn sync() {
    let _ = Command::new("sync").status();
}

fn run(command: &mut Command) -> Duration {
    sync();
    let started = Instant::now();
    let status = command.status().unwrap();
    assert!(status.success(), "{command:?} failed");
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
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

struct Phase {
    name: &'static str,
    times: Vec<Duration>,
    /// CPU seconds of each run (ours: every thread of this process; tar: tar and zstd).
    cpu: Vec<f64>,
    rss: u64,
}

impl Phase {
    fn new(name: &'static str) -> Self {
        Self { name, times: Vec::new(), cpu: Vec::new(), rss: 0 }
    }

    /// Times `f`, counting the CPU of this process (`children`: of the children it waits for).
    fn measure(&mut self, children: bool, f: impl FnOnce() -> Duration) {
        let before = cpu_seconds();
        let elapsed = f();
        let after = cpu_seconds();
        self.times.push(elapsed);
        self.cpu.push(if children { after.1 - before.1 } else { after.0 - before.0 });
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("backup benchmark: run `cargo bench -p nexus-wings --bench backup`");
        return;
    }
    let size_mb: f64 = env_or("NEXUS_BENCH_BACKUP_MB", 1024.0);
    let rounds: usize = env_or("NEXUS_BENCH_ROUNDS", 3);
    let base = std::env::var_os("NEXUS_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let work = tempfile::tempdir_in(base).unwrap();
    let volumes = work.path().join("volumes");
    let server = ServerId::new();
    let root = volumes.join(server.to_string());
    std::fs::create_dir_all(&root).unwrap();
    let started = Instant::now();
    let bytes = generate(&root, size_mb / 1024.0);
    let count = walkdir_count(&root);
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

    // The daemon's runtime: one thread, file work on the blocking pool.
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(32).build().unwrap();
    let store_dir = work.path().join("store");
    let store = ObjectStoreConfig::local(&store_dir).open().unwrap();
    let backups = BackupStore::new(store, RetryPolicy::default());
    let config = FilesConfig { archive_limits: backup_limits(0), ..FilesConfig::default() };
    let tar_archive = work.path().join("tar.tar.zst");
    let tar_out = work.path().join("tar-out");
    let empty_root = volumes.join(ServerId::new().to_string());

    if std::env::var_os("NEXUS_BENCH_PROFILE").is_some() {
        // For a profiler attached now: backups only.
        println!("profile: pid {}, starting in 5 s", std::process::id());
        std::thread::sleep(Duration::from_secs(5));
        for _ in 0..rounds {
            tokio.block_on(async {
                let files = ServerFiles::open(&root, config.clone()).await.unwrap();
                let started = Instant::now();
                backups.create(&files, server, BackupId::new(), &[]).await.unwrap();
                println!("profile: backup {:.2} s", started.elapsed().as_secs_f64());
            });
        }
        return;
    }
    let mut tar_backup = Phase::new("tar -I zstd -cf");
    let mut our_backup = Phase::new("backup (BackupStore, file://)");
    let mut bare_backup = Phase::new("write_backup into a discarding sink");
    let mut tar_restore = Phase::new("tar -I zstd -xf (empty dir)");
    let mut our_restore = Phase::new("restore (empty server dir)");
    let mut sizes = (0u64, 0u64);
    let mut last = None;
    let baseline = status_kb("VmRSS:");
    for round in 0..rounds {
        // Backups: tar, then ours.
        let _ = std::fs::remove_file(&tar_archive);
        reset_peak_rss();
        tar_backup.measure(true, || {
            run(Command::new("tar").arg("-I").arg("zstd").arg("-cf").arg(&tar_archive).arg("-C").arg(&root).arg("."))
        });
        sizes.0 = std::fs::metadata(&tar_archive).unwrap().len();

        // As tar's archive was removed before tar ran, the previous backup goes first.
        if let Some((old, _)) = last.take() {
            tokio.block_on(backups.delete(server, old)).unwrap();
        }
        let backup = BackupId::new();
        sync();
        reset_peak_rss();
        let mut created = None;
        our_backup.measure(false, || {
            tokio.block_on(async {
                let files = ServerFiles::open(&root, config.clone()).await.unwrap();
                let started = Instant::now();
                created = Some(backups.create(&files, server, backup, &[]).await.unwrap());
                started.elapsed()
            })
        });
        let created = created.unwrap();
        our_backup.rss = our_backup.rss.max(peak_rss());
        sizes.1 = created.bytes;
        last = Some((backup, created.checksum_hex()));

        // The archiving alone: no hash, no store.
        sync();
        reset_peak_rss();
        bare_backup.measure(false, || {
            tokio.block_on(async {
                let files = ServerFiles::open(&root, config.clone()).await.unwrap();
                let started = Instant::now();
                files.write_backup(tokio::io::sink(), &[]).await.unwrap();
                started.elapsed()
            })
        });
        bare_backup.rss = bare_backup.rss.max(peak_rss());

        if std::env::var_os("NEXUS_BENCH_DIAG").is_some() {
            diagnose(&tokio, &root, &config, work.path());
        }

        // Restores into empty directories: tar, then ours.
        fresh_dir(&tar_out);
        tar_restore.measure(true, || {
            run(Command::new("tar").arg("-I").arg("zstd").arg("-xf").arg(&tar_archive).arg("-C").arg(&tar_out))
        });

        fresh_dir(&empty_root);
        sync();
        reset_peak_rss();
        let (_, checksum) = last.clone().unwrap();
        our_restore.measure(false, || {
            tokio.block_on(async {
                let files = ServerFiles::open(&empty_root, config.clone()).await.unwrap();
                let started = Instant::now();
                backups.restore(&files, server, backup, &checksum, true).await.unwrap();
                started.elapsed()
            })
        });
        our_restore.rss = our_restore.rss.max(peak_rss());
        println!(
            "round {}: tar -cf {:.2} s, backup {:.2} s; tar -xf {:.2} s, restore {:.2} s",
            round + 1,
            tar_backup.times[round].as_secs_f64(),
            our_backup.times[round].as_secs_f64(),
            tar_restore.times[round].as_secs_f64(),
            our_restore.times[round].as_secs_f64()
        );
    }
    // Restored over the full directory: stage, swap, remove the old tree.
    let (backup, checksum) = last.unwrap();
    sync();
    reset_peak_rss();
    let over_full = tokio.block_on(async {
        let files = ServerFiles::open(&root, config.clone()).await.unwrap();
        let started = Instant::now();
        backups.restore(&files, server, backup, &checksum, true).await.unwrap();
        started.elapsed()
    });
    let over_full_rss = peak_rss();
    assert_eq!(walkdir_count(&root), count, "the restored directory has every file");

    println!();
    println!("{:<38} {:>9} {:>7} {:>10} {:>12}", "phase (median)", "time", "MiB/s", "CPU", "peak RSS");
    for phase in [&tar_backup, &our_backup, &bare_backup, &tar_restore, &our_restore] {
        let time = median(phase.times.clone());
        let mut cpu = phase.cpu.clone();
        cpu.sort_by(f64::total_cmp);
        let rss = if phase.rss == 0 { "(child)".to_owned() } else { format!("{:.1} MiB", mib(phase.rss)) };
        println!(
            "{:<38} {:>7.2} s {:>7.0} {:>8.2} s {:>12}",
            phase.name,
            time.as_secs_f64(),
            mib(bytes) / time.as_secs_f64(),
            cpu[cpu.len() / 2],
            rss
        );
    }
    println!(
        "{:<38} {:>7.2} s {:>7.0} {:>10} {:>8.1} MiB",
        "restore (over the full directory)",
        over_full.as_secs_f64(),
        mib(bytes) / over_full.as_secs_f64(),
        "",
        mib(over_full_rss)
    );
    let ratio = |ours: &Phase, theirs: &Phase| {
        median(ours.times.clone()).as_secs_f64() / median(theirs.times.clone()).as_secs_f64()
    };
    println!(
        "resident before the phases: {:.1} MiB (peaks include it; tar and zstd are child processes, not counted)",
        mib(baseline)
    );
    println!();
    println!("backup / tar -cf:  {:.2}x (goal <= 1.2)", ratio(&our_backup, &tar_backup));
    println!("restore / tar -xf: {:.2}x (goal <= 1.2)", ratio(&our_restore, &tar_restore));
    println!(
        "archive: ours {:.1} MiB, tar's {:.1} MiB ({:.3} of the directory's size)",
        mib(sizes.1),
        mib(sizes.0),
        sizes.1 as f64 / bytes as f64
    );
}

/// Regular files below `dir`.
fn walkdir_count(dir: &Path) -> u64 {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            count += walkdir_count(&entry.path());
        } else if kind.is_file() {
            count += 1;
        }
    }
    count
}

/// Where the time of a backup goes (`NEXUS_BENCH_DIAG=1`): the archive into a hashing sink,
/// into a file, into a hashing file writer.
fn diagnose(tokio: &tokio::runtime::Runtime, root: &Path, config: &FilesConfig, work: &Path) {
    use sha2::Digest as _;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    struct Hashing<W> {
        inner: W,
        hasher: sha2::Sha256,
    }
    impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Hashing<W> {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let this = &mut *self;
            match Pin::new(&mut this.inner).poll_write(cx, buf) {
                Poll::Ready(Ok(n)) => {
                    this.hasher.update(&buf[..n]);
                    Poll::Ready(Ok(n))
                }
                other => other,
            }
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }
    let target = work.join("diag.tar.zst");
    let time = |name: &str, f: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>| {
        sync();
        let started = Instant::now();
        tokio.block_on(f);
        println!("  diag: {name}: {:.2} s", started.elapsed().as_secs_f64());
    };
    time(
        "hashing sink",
        Box::pin(async {
            let files = ServerFiles::open(root, config.clone()).await.unwrap();
            let sink = Hashing { inner: tokio::io::sink(), hasher: sha2::Sha256::new() };
            files.write_backup(sink, &[]).await.unwrap();
        }),
    );
    time(
        "file",
        Box::pin(async {
            let files = ServerFiles::open(root, config.clone()).await.unwrap();
            let file = tokio::fs::File::create(&target).await.unwrap();
            files.write_backup(file, &[]).await.unwrap();
        }),
    );
    time(
        "hashing file",
        Box::pin(async {
            let files = ServerFiles::open(root, config.clone()).await.unwrap();
            let file = tokio::fs::File::create(&target).await.unwrap();
            files.write_backup(Hashing { inner: file, hasher: sha2::Sha256::new() }, &[]).await.unwrap();
        }),
    );
}
