//! Confinement: the user a container runs as, its capabilities, `no-new-privileges`, the
//! read-only root with a sized `/tmp`, and what a hostile process can leave in its data
//! directory for the host to trip over.

use super::install::install_spec;
use crate::runtime::context::{read_to_end, texts};
use crate::runtime::{BUSYBOX_USER_IMAGE, Ctx, TEST_USER};
use nexus_core::console::ConsoleStream;
use nexus_core::runtime::{ContainerUser, Isolation};
use nexus_core::runtime::{INSTALL_DROPPED_CAPABILITIES, SERVER_DROPPED_CAPABILITIES};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// What a hostile process tries from inside; each attempt prints one `name=ok|refused` line.
const ATTACKS: &str = r#"
try() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name=ok"; else echo "$name=refused"; fi; }
echo "uid=$(id -u) gid=$(id -g)"
grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status | tr -d '\t ' | tr ':' '='
try mknod_home mknod "$DIR/dev-null" c 1 3
try mknod_tmp mknod /tmp/dev-null c 1 3
try write_root touch /nexus-root-write
try write_etc sh -c 'echo x >> /etc/passwd'
cp /bin/busybox "$DIR/suid-copy"
try chmod_suid chmod 4755 "$DIR/suid-copy"
try chown_root chown 0:0 "$DIR/suid-copy"
try chgrp_sgid sh -c "chgrp 0 '$DIR/suid-copy' && chmod 2755 '$DIR/suid-copy'"
try tmp_exec sh -c 'cp /bin/busybox /tmp/true && /tmp/true'
try tmp_over_size dd if=/dev/zero of=/tmp/fill bs=1048576 count=40
echo "tmp_mount=$(grep ' /tmp ' /proc/mounts | cut -d' ' -f4)"
echo attacks-done
"#;

/// Parses the `name=value` lines the attack script prints.
fn results(lines: &[String]) -> std::collections::BTreeMap<String, String> {
    lines.iter().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// The capability bits of `names` (`CAP_MKNOD` ...), as in `/proc/<pid>/status` masks.
fn capability_mask(names: &[&str]) -> u64 {
    const BITS: &[(&str, u32)] = &[
        ("CAP_CHOWN", 0),
        ("CAP_DAC_OVERRIDE", 1),
        ("CAP_FOWNER", 3),
        ("CAP_FSETID", 4),
        ("CAP_SETPCAP", 8),
        ("CAP_NET_BIND_SERVICE", 10),
        ("CAP_NET_RAW", 13),
        ("CAP_SYS_CHROOT", 18),
        ("CAP_MKNOD", 27),
        ("CAP_AUDIT_WRITE", 29),
        ("CAP_SETFCAP", 31),
    ];
    names.iter().fold(0, |mask, name| {
        let bit = BITS.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("unknown capability {name}")).1;
        mask | (1 << bit)
    })
}

fn hex_mask(results: &std::collections::BTreeMap<String, String>, key: &str) -> u64 {
    let text = results.get(key).unwrap_or_else(|| panic!("no {key} in {results:?}"));
    u64::from_str_radix(text, 16).unwrap_or_else(|e| panic!("{key}={text}: {e}"))
}

/// Nothing in `dir` that would be dangerous on the host: no device node, fifo or socket, and
/// no set-uid or set-gid file owned by root or the root group.
fn assert_inert_on_host(dir: &Path) {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("reading the data directory") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let kind = meta.file_type();
            assert!(kind.is_dir() || kind.is_file() || kind.is_symlink(), "special file left on the host: {path:?}");
            let setid = meta.mode() & 0o6000;
            assert!(
                setid == 0 || (meta.uid() != 0 && (meta.mode() & 0o2000 == 0 || meta.gid() != 0)),
                "set-id file owned by root on the host: {path:?} mode {:o} uid {} gid {}",
                meta.mode(),
                meta.uid(),
                meta.gid()
            );
            if kind.is_dir() {
                pending.push(path);
            }
        }
    }
}

fn hand_to(dir: &Path, user: ContainerUser) {
    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).expect("chown data dir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod data dir");
}

/// A server container with an unprivileged user runs as exactly that uid and gid, with
/// `NoNewPrivs`, no effective capabilities and none of
/// [`SERVER_DROPPED_CAPABILITIES`] in its bounding set; it cannot create device nodes,
/// write the image's root filesystem, give a file to root or make a root set-id file; its
/// `/tmp` is a `nosuid,nodev` tmpfs of the requested size that allows `exec` and refuses
/// more than its size; and nothing it leaves in its data directory is dangerous on the host.
pub async fn server_container_is_confined(ctx: Ctx) {
    let mut spec = ctx.spec(ATTACKS);
    spec.isolation = Isolation { tmp_size_mb: 16, ..Isolation::server().with_user(Some(TEST_USER)) };
    spec.env.insert("DIR".into(), nexus_core::runtime::HOME.into());
    hand_to(&spec.data_dir, TEST_USER);
    let (_id, mut console) = ctx.run_attached(&spec).await;
    let lines = read_to_end(&mut console.output, Duration::from_secs(60)).await;
    let out = texts(&lines, ConsoleStream::Stdout);
    assert!(out.iter().any(|l| l == "attacks-done"), "script did not finish: {lines:?}");
    let r = results(&out);
    assert_eq!(r.get("uid").map(String::as_str), Some(&*format!("{} gid={}", TEST_USER.uid, TEST_USER.gid)), "{r:?}");
    assert_eq!(r.get("NoNewPrivs").map(String::as_str), Some("1"), "{r:?}");
    assert_eq!(hex_mask(&r, "CapEff"), 0, "an unprivileged user has no effective capability: {r:?}");
    let bounding = hex_mask(&r, "CapBnd");
    assert_eq!(bounding & capability_mask(SERVER_DROPPED_CAPABILITIES), 0, "dropped capabilities remain: {r:?}");
    for refused in ["mknod_home", "mknod_tmp", "write_root", "write_etc", "chown_root", "chgrp_sgid", "tmp_over_size"] {
        assert_eq!(r.get(refused).map(String::as_str), Some("refused"), "{refused} must fail: {r:?}");
    }
    assert_eq!(r.get("tmp_exec").map(String::as_str), Some("ok"), "/tmp allows exec: {r:?}");
    let tmp = r.get("tmp_mount").cloned().unwrap_or_default();
    for option in ["nosuid", "nodev", "size=16384k"] {
        assert!(tmp.split(',').any(|o| o == option), "/tmp mount lacks {option}: {tmp}");
    }
    assert!(!spec.data_dir.join("dev-null").exists(), "a device node reached the host");
    let copy = std::fs::symlink_metadata(spec.data_dir.join("suid-copy")).expect("the copy exists");
    assert_eq!((copy.uid(), copy.gid()), (TEST_USER.uid, TEST_USER.gid), "files belong to the container's user");
    assert_inert_on_host(&spec.data_dir);
}

/// A server container keeping the image's user (root in the test image) still runs with
/// `NoNewPrivs`, without [`SERVER_DROPPED_CAPABILITIES`] (so no device node, no chown to
/// another user) and on a read-only root.
pub async fn root_server_container_lacks_dropped_capabilities(ctx: Ctx) {
    let mut spec = ctx.spec(ATTACKS);
    spec.env.insert("DIR".into(), nexus_core::runtime::HOME.into());
    let (_id, mut console) = ctx.run_attached(&spec).await;
    let lines = read_to_end(&mut console.output, Duration::from_secs(60)).await;
    let out = texts(&lines, ConsoleStream::Stdout);
    assert!(out.iter().any(|l| l == "attacks-done"), "script did not finish: {lines:?}");
    let r = results(&out);
    assert_eq!(r.get("uid").map(String::as_str), Some("0 gid=0"), "{r:?}");
    assert_eq!(r.get("NoNewPrivs").map(String::as_str), Some("1"), "{r:?}");
    let mask = capability_mask(SERVER_DROPPED_CAPABILITIES);
    assert_eq!(hex_mask(&r, "CapBnd") & mask, 0, "dropped capabilities remain: {r:?}");
    assert_eq!(hex_mask(&r, "CapEff") & mask, 0, "dropped capabilities remain: {r:?}");
    for refused in ["mknod_home", "mknod_tmp", "write_root"] {
        assert_eq!(r.get(refused).map(String::as_str), Some("refused"), "{refused} must fail: {r:?}");
    }
    assert!(!spec.data_dir.join("dev-null").exists(), "a device node reached the host");
}

/// Install containers run as root by default (as with Wings: scripts install packages), with
/// `NoNewPrivs` and without [`INSTALL_DROPPED_CAPABILITIES`]: no device nodes; with a user
/// given they run as that user.
pub async fn install_container_is_confined(ctx: Ctx) {
    let mut spec = install_spec(&ctx, &ATTACKS.replace("$DIR", "/mnt/server"));
    let outcome = ctx.runtime.run_install(&spec, None).await.expect("run_install");
    let lines: Vec<String> = outcome.log.lines().map(str::to_owned).collect();
    let r = results(&lines);
    assert!(lines.iter().any(|l| l == "attacks-done"), "script did not finish: {}", outcome.log);
    assert_eq!(r.get("uid").map(String::as_str), Some("0 gid=0"), "{r:?}");
    assert_eq!(r.get("NoNewPrivs").map(String::as_str), Some("1"), "{r:?}");
    let mask = capability_mask(INSTALL_DROPPED_CAPABILITIES);
    assert_eq!(hex_mask(&r, "CapBnd") & mask, 0, "dropped capabilities remain: {r:?}");
    for refused in ["mknod_home", "mknod_tmp"] {
        assert_eq!(r.get(refused).map(String::as_str), Some("refused"), "{refused} must fail: {r:?}");
    }
    assert_eq!(r.get("write_root").map(String::as_str), Some("ok"), "installs may install packages: {r:?}");
    assert!(!spec.data_dir.join("dev-null").exists(), "a device node reached the host");

    spec.isolation = Isolation::install().with_user(Some(TEST_USER));
    spec.server = ctx.server();
    spec.data_dir = ctx.data_dir();
    hand_to(&spec.data_dir, TEST_USER);
    let outcome = ctx.runtime.run_install(&spec, None).await.expect("run_install as a user");
    let r = results(&outcome.log.lines().map(str::to_owned).collect::<Vec<_>>());
    assert_eq!(r.get("uid").map(String::as_str), Some(&*format!("{} gid={}", TEST_USER.uid, TEST_USER.gid)), "{r:?}");
    assert_eq!(hex_mask(&r, "CapEff"), 0, "{r:?}");
    assert_inert_on_host(&spec.data_dir);
}

/// An image made like the community's (`USER container`, [`BUSYBOX_USER_IMAGE`]) runs as the
/// node's user, as under Wings, and that user writes the server's directory it owns.
pub async fn image_user_gives_way_to_the_node_user(ctx: Ctx) {
    let mut spec = ctx.spec("id -u > whoami.txt && pwd >> whoami.txt && echo written");
    spec.image = BUSYBOX_USER_IMAGE.to_owned();
    spec.isolation = Isolation::server().with_user(Some(TEST_USER));
    hand_to(&spec.data_dir, TEST_USER);
    let (id, mut console) = ctx.run_attached(&spec).await;
    let lines = read_to_end(&mut console.output, Duration::from_secs(30)).await;
    assert_eq!(texts(&lines, ConsoleStream::Stdout), ["written"], "{lines:?}");
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 0);
    let written = std::fs::read_to_string(spec.data_dir.join("whoami.txt")).expect("the file on the host");
    assert_eq!(written, format!("{}\n/home/container\n", TEST_USER.uid));
    let meta = std::fs::metadata(spec.data_dir.join("whoami.txt")).expect("metadata");
    assert_eq!((meta.uid(), meta.gid()), (TEST_USER.uid, TEST_USER.gid));
}
