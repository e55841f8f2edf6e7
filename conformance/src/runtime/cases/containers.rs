//! Container identity, data directory, environment, limits and ports.

use crate::runtime::context::{LINE_TIMEOUT, expect_line, free_port, read_to_end, texts};
use crate::runtime::{CONFORMANCE_LABEL, Ctx};
use nexus_core::console::ConsoleStream;
use nexus_core::model::ServerLimits;
use nexus_core::runtime::{MANAGED_LABEL, PortBinding, SERVER_LABEL, container_name};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// The container is named `nexus-server-<uuid>`, carries `SERVER_LABEL` = the server id,
/// `MANAGED_LABEL` and the spec's own labels, and runs under an init process: the engine says
/// so and the server process is not PID 1.
pub async fn container_is_named_labelled_and_runs_under_init(ctx: Ctx) {
    let mut spec = ctx.spec("echo pid=$$");
    spec.labels.insert("com.example.owner".into(), "alice".into());
    let (id, mut console) = ctx.run_attached(&spec).await;

    let view = ctx.probe.inspect(&id).await.expect("inspect");
    assert_eq!(view.name, container_name(spec.server), "container name");
    assert_eq!(view.labels.get(SERVER_LABEL), Some(&spec.server.to_string()), "server label");
    assert!(view.labels.contains_key(MANAGED_LABEL), "managed label missing: {:?}", view.labels);
    assert_eq!(view.labels.get("com.example.owner").map(String::as_str), Some("alice"), "spec label");
    assert_eq!(view.labels.get(CONFORMANCE_LABEL).map(String::as_str), Some("true"), "spec label");
    assert!(view.init, "containers run with init enabled");

    let lines = read_to_end(&mut console.output, LINE_TIMEOUT).await;
    let pid = texts(&lines, ConsoleStream::Stdout)
        .iter()
        .find_map(|l| l.strip_prefix("pid=").map(str::to_owned))
        .unwrap_or_else(|| panic!("no pid line in {lines:?}"));
    assert_ne!(pid, "1", "the server process must not be PID 1 (init is)");
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 0);
}

/// The data directory is bind-mounted read-write at `/home/container`: a file written on the
/// host is read inside, one written inside is read on the host. The process starts in
/// `/home/container` with the spec's environment, values passed verbatim (never parsed by a
/// shell).
pub async fn data_dir_is_home_container_both_ways(ctx: Ctx) {
    let odd = r#"a'b"c $HOME;`id` \n"#;
    let mut spec = ctx.spec(
        r#"echo "cwd=$(pwd)"; echo "greeting=$GREETING"; echo "odd=$ODD"; cat /home/container/from-host.txt
echo from-container > /home/container/from-container.txt"#,
    );
    spec.env.insert("GREETING".into(), "hello world".into());
    spec.env.insert("ODD".into(), odd.into());
    std::fs::write(spec.data_dir.join("from-host.txt"), "from-host\n").expect("writing on the host");

    let (id, mut console) = ctx.run_attached(&spec).await;
    let lines = read_to_end(&mut console.output, LINE_TIMEOUT).await;
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 0, "script failed: {lines:?}");
    assert_eq!(
        texts(&lines, ConsoleStream::Stdout),
        ["cwd=/home/container", "greeting=hello world", &format!("odd={odd}"), "from-host"],
        "stderr: {:?}",
        texts(&lines, ConsoleStream::Stderr)
    );
    let written = std::fs::read_to_string(spec.data_dir.join("from-container.txt")).expect("reading on the host");
    assert_eq!(written, "from-container\n");
}

/// Memory, swap, CPU quota, pids and block-IO weight are applied. The engine records them
/// (read back through the probe) and the kernel enforces memory, pids and CPU (read from the
/// cgroup files inside the container, v1 or v2). Swap `-1` is unlimited, `0` none; zero
/// memory, CPU and pids are unlimited.
pub async fn limits_are_applied(ctx: Ctx) {
    let limits = ServerLimits { memory_mb: 256, swap_mb: 64, cpu_percent: 50, disk_mb: 0, io_weight: 500, pids: 64 };
    let mut spec = ctx.spec(
        r#"cg=/sys/fs/cgroup
if [ -f $cg/cgroup.controllers ]; then
  echo "memory=$(cat $cg/memory.max)"; echo "pids=$(cat $cg/pids.max)"; echo "cpu=$(cat $cg/cpu.max)"
  [ -f $cg/io.weight ] && echo io-weight-file=yes || echo io-weight-file=no
else
  echo "memory=$(cat $cg/memory/memory.limit_in_bytes)"; echo "pids=$(cat $cg/pids/pids.max)"
  echo "cpu=$(cat $cg/cpu/cpu.cfs_quota_us) $(cat $cg/cpu/cpu.cfs_period_us)"
  [ -f $cg/blkio/blkio.weight ] && echo io-weight-file=yes || echo io-weight-file=no
fi"#,
    );
    spec.limits = limits;
    let (id, mut console) = ctx.run_attached(&spec).await;
    let recorded = ctx.probe.inspect(&id).await.expect("inspect").limits;
    let lines = read_to_end(&mut console.output, LINE_TIMEOUT).await;
    let out = texts(&lines, ConsoleStream::Stdout);
    let value = |key: &str| {
        out.iter()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {key}= line in {lines:?}"))
    };

    assert_eq!(recorded.memory_mb, 256, "engine memory limit");
    assert_eq!(recorded.swap_mb, 64, "engine swap limit (beyond memory)");
    assert_eq!(recorded.cpu_percent, 50, "engine CPU quota");
    assert_eq!(recorded.pids, 64, "engine pids limit");
    if recorded.io_weight == 0 && value("io-weight-file") == "no" {
        eprintln!("note: this host has no block-IO weight support; the engine discarded io_weight 500");
    } else {
        assert_eq!(recorded.io_weight, 500, "engine block-IO weight");
    }

    assert_eq!(value("memory"), (256 * MIB).to_string(), "kernel memory limit");
    assert_eq!(value("pids"), "64", "kernel pids limit");
    let cpu = value("cpu");
    let (quota, period) = cpu.split_once(' ').unwrap_or_else(|| panic!("cpu line {cpu:?}"));
    let (quota, period): (u64, u64) = (quota.parse().expect("quota"), period.parse().expect("period"));
    assert_eq!(quota * 100 / period, 50, "kernel CPU quota {quota}/{period} is 50% of one core");

    for (limits, expected, what) in [
        (ServerLimits { memory_mb: 128, swap_mb: -1, ..ServerLimits::default() }, (128, -1), "unlimited swap"),
        (ServerLimits { memory_mb: 128, swap_mb: 0, ..ServerLimits::default() }, (128, 0), "no swap"),
    ] {
        let mut spec = ctx.spec("true");
        spec.limits = limits;
        let id = ctx.create(&spec).await;
        let recorded = ctx.probe.inspect(&id).await.expect("inspect").limits;
        assert_eq!((recorded.memory_mb, recorded.swap_mb), expected, "{what}");
    }
    let id = ctx.create(&ctx.spec("true")).await;
    let recorded = ctx.probe.inspect(&id).await.expect("inspect").limits;
    assert_eq!(
        (recorded.memory_mb, recorded.cpu_percent, recorded.pids, recorded.io_weight),
        (0, 0, 0, 0),
        "no limits requested, none recorded"
    );
}

/// Every port binding is published for TCP and for UDP on its `ip:port`: a TCP connection and
/// UDP datagrams sent to `127.0.0.1:port` on the host reach the process. (Busybox has no UDP
/// listener, so the script watches the kernel's per-namespace UDP counters, which count every
/// datagram that arrives, listener or not.)
pub async fn ports_are_published_tcp_and_udp(ctx: Ctx) {
    let port = free_port();
    let mut spec = ctx.spec(&format!(
        r#"udp() {{ awk '/^Udp: [0-9]/ {{ print $2 + $3; exit }}' /proc/net/snmp; }}
nc -l -p {port} > /home/container/tcp.txt &
base=$(udp)
echo ready
while [ "$(udp)" -le "$base" ]; do sleep 0.1; done
echo udp-arrived
wait"#
    ));
    spec.ports = vec![PortBinding { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port }];
    let data_dir = spec.data_dir.clone();
    let (id, mut console) = ctx.run_attached(&spec).await;
    expect_line(&mut console.output, "ready").await;

    // UDP: keep sending from one socket until the process has seen a datagram.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding a UDP socket");
            for _ in 0..300 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // Errors (ICMP unreachable reported back) are expected until the path exists.
                let _ = socket.send_to(b"hello-udp\n", ("127.0.0.1", port));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    expect_line(&mut console.output, "udp-arrived").await;
    stop.store(true, Ordering::Relaxed);
    sender.await.expect("UDP sender");

    // TCP: the engine's proxy may accept before the listener inside is up; retry until the
    // bytes land in the data directory.
    let tcp_file = data_dir.join("tcp.txt");
    let tcp = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            let address = (Ipv4Addr::LOCALHOST, port).into();
            if let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
                let _ = stream.write_all(b"hello-tcp\n");
                let _ = stream.shutdown(std::net::Shutdown::Write);
            }
            std::thread::sleep(Duration::from_millis(300));
            if std::fs::read_to_string(&tcp_file).is_ok_and(|s| s.contains("hello-tcp")) {
                return true;
            }
        }
        false
    });
    assert!(tcp.await.expect("TCP client"), "TCP data sent to 127.0.0.1:{port} did not reach the container");
    read_to_end(&mut console.output, LINE_TIMEOUT).await;
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 0);
}
