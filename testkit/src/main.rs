//! `k8s-fake-apiserver`: the fake Kubernetes API server as a standalone process.

use k8s_fake_apiserver::{FakeApiServer, Options};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "\
Usage: k8s-fake-apiserver [OPTIONS]

A fake Kubernetes API server for v1 Endpoints and discovery.k8s.io/v1 EndpointSlices.

Options:
  --listen ADDR              address to bind (default 127.0.0.1:0)
  --seed FILE                JSON array or {\"items\":[...]} of objects to create at startup
  --port-file PATH           write the bound port to PATH once listening
  --token T                  require `Authorization: Bearer T`
  --token-file PATH          require the bearer token read from PATH at start
  --token-user NAME          the user a valid token authenticates as (403 messages)
  --tls                      serve TLS with a CA and certificates generated at start
  --tls-dir DIR              where --tls writes ca.crt, client.crt, ... (default: a new temp dir)
  --ipv6-loopback            also listen on [::1] at the same port
  --require-client-cert      refuse TLS clients without a certificate signed by client-ca.crt
  --history N                events kept per kind for watch resumption (default 10000)
  --bookmark-interval SECS   period of watch BOOKMARKs (default 60)
  --continue-ttl SECS        continue-token lifetime; `none` = until compaction (default 300)
  --max-page-size N          at most N items per LIST page when the client sets a limit
  --no-watch-list            disable sendInitialEvents (streaming lists get 422)
  --ignore-watch-list        drop sendInitialEvents and resourceVersionMatch from watches unread (no end bookmark)
  --fuzz-chunks              split/merge watch events across chunk boundaries
  --no-warnings              omit the v1 Endpoints deprecation Warning header
  --quiet                    do not log requests to stderr
  -h, --help                 show this help

Prints `listening on ADDR` on stdout once ready (in TLS mode then `tls dir DIR`). Admin API under /fake/ (see README).
";

struct Cli {
    opts: Options,
    seed: Option<PathBuf>,
    port_file: Option<PathBuf>,
}

fn secs(flag: &str, v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{flag}: expected seconds, got {v:?}"))
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Cli>, String> {
    let mut opts = Options {
        log_requests: true,
        ..Options::default()
    };
    let mut seed = None;
    let mut port_file = None;
    let mut tls = false;
    let mut tls_dir: Option<PathBuf> = None;
    let mut require_client_cert = false;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                let v = value()?;
                opts.listen = v
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| format!("--listen: bad address {v:?}"))?;
            }
            "--seed" => seed = Some(PathBuf::from(value()?)),
            "--port-file" => port_file = Some(PathBuf::from(value()?)),
            "--token" => opts.token = Some(value()?).filter(|t| !t.is_empty()),
            "--token-file" => {
                let p = value()?;
                let t =
                    std::fs::read_to_string(&p).map_err(|e| format!("--token-file {p}: {e}"))?;
                opts.token = Some(t.trim().to_string()).filter(|t| !t.is_empty());
            }
            "--token-user" => opts.token_user = value()?,
            "--tls" => tls = true,
            "--ipv6-loopback" => opts.also_ipv6_loopback = true,
            "--tls-dir" => tls_dir = Some(PathBuf::from(value()?)),
            "--require-client-cert" => require_client_cert = true,
            "--history" => {
                let v = value()?;
                opts.history = v
                    .parse()
                    .map_err(|_| format!("--history: bad number {v:?}"))?;
            }
            "--bookmark-interval" => {
                opts.bookmark_interval = secs("--bookmark-interval", &value()?)?
            }
            "--continue-ttl" => {
                let v = value()?;
                opts.continue_ttl = if v == "none" {
                    None
                } else {
                    Some(secs("--continue-ttl", &v)?)
                };
            }
            "--max-page-size" => {
                let v = value()?;
                opts.max_page_size = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("--max-page-size: bad number {v:?}"))?,
                );
            }
            "--no-watch-list" => opts.watch_list = false,
            "--ignore-watch-list" => opts.ignore_watch_list_params = true,
            "--fuzz-chunks" => opts.fuzz_chunks = true,
            "--no-warnings" => opts.endpoints_warning = false,
            "--quiet" => opts.log_requests = false,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !tls && (tls_dir.is_some() || require_client_cert) {
        return Err("--tls-dir and --require-client-cert need --tls".into());
    }
    if tls {
        let dir = match tls_dir {
            Some(d) => d,
            None => {
                std::env::temp_dir().join(format!("k8s-fake-apiserver-tls-{}", std::process::id()))
            }
        };
        opts.tls = Some(k8s_fake_apiserver::TlsOptions {
            dir,
            require_client_cert,
        });
    }
    Ok(Some(Cli {
        opts,
        seed,
        port_file,
    }))
}

fn run(cli: Cli) -> Result<(), String> {
    let server = FakeApiServer::start(cli.opts.clone())
        .map_err(|e| format!("cannot listen on {}: {e}", cli.opts.listen))?;
    if let Some(seed) = &cli.seed {
        let n = server.load_seed(seed)?;
        eprintln!("seeded {n} objects from {}", seed.display());
    }
    let addr: SocketAddr = server.addr();
    if let Some(p) = &cli.port_file {
        std::fs::write(p, format!("{}\n", addr.port()))
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        if let Some(t) = &cli.opts.tls {
            let _ = writeln!(out, "tls dir {}", t.dir.display());
        }
        let _ = out.flush();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok::<(), String>(())
    })?;
    drop(server);
    Ok(())
}

fn main() {
    let cli = match parse_args(std::env::args().skip(1)) {
        Ok(Some(cli)) => cli,
        Ok(None) => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("k8s-fake-apiserver: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(cli) {
        eprintln!("k8s-fake-apiserver: {e}");
        std::process::exit(1);
    }
}
