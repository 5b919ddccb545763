//! `shoal-proxy` binary: read the pool file, start, serve until SIGINT/SIGTERM.
//! SIGHUP (or editing the file) reloads the pools without dropping client connections.

use std::path::PathBuf;

use clap::Parser;
use shoal_proxy::config::ProxyConfig;

/// Shoal's sharding proxy: a drop-in replacement for twemproxy (nutcracker) that uses
/// every core, knows replicas and fails over.
#[derive(Parser, Debug)]
#[command(name = "shoal-proxy", version, about)]
struct Cli {
    /// The pool file, in twemproxy's YAML format (plus Shoal keys).
    #[arg(short = 'c', long = "config", default_value = "conf/nutcracker.yml")]
    config: PathBuf,
    /// Check the configuration, report every problem, and exit (twemproxy's -t).
    #[arg(short = 't', long = "check-config")]
    check_config: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Prometheus /metrics port (0 disables).
    #[arg(long, default_value_t = 0)]
    metrics_port: u16,
    /// Address for /metrics.
    #[arg(long, default_value = "127.0.0.1")]
    metrics_bind: std::net::IpAddr,
    /// Where live-reshard state is kept (default: the config file's path + `.reshard`);
    /// a restarted proxy finishes or resumes the reshard recorded there.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    loglevel: String,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Taken before reading: an edit made while the proxy starts is then still seen.
    let config_mtime = std::fs::metadata(&cli.config)
        .and_then(|m| m.modified())
        .ok();
    let cfg = match ProxyConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal-proxy: configuration has errors:\n{e}");
            return std::process::ExitCode::from(2);
        }
    };
    for w in &cfg.warnings {
        eprintln!(
            "shoal-proxy: warning: {}:{}: {}",
            cli.config.display(),
            w.line,
            w.message
        );
    }
    if cli.check_config {
        println!(
            "shoal-proxy: configuration file '{}' syntax is ok",
            cli.config.display()
        );
        return std::process::ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.loglevel));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let threads = cli.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(std::num::NonZeroUsize::get)
            .unwrap_or(1)
    });
    let opts = shoal_proxy::server::Options {
        threads,
        metrics_port: cli.metrics_port,
        metrics_bind: cli.metrics_bind,
        config_path: Some(cli.config.clone()),
        config_mtime,
        state_file: Some(cli.state_file.clone().unwrap_or_else(|| {
            let mut p = cli.config.clone().into_os_string();
            p.push(".reshard");
            PathBuf::from(p)
        })),
    };
    let proxy = match shoal_proxy::server::start(cfg, opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shoal-proxy: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    wait_for_signal();
    tracing::info!("shutting down");
    proxy.shutdown();
    std::process::ExitCode::SUCCESS
}

fn wait_for_signal() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
}
