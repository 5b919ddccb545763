//! `shoal-server` binary: parse flags and config, start, wait for SIGINT/SIGTERM.

use clap::Parser;
use shoal_server::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match cli.resolve() {
        Ok(c) => c,
        Err(errs) => {
            for e in errs {
                eprintln!("shoal-server: config error: {e}");
            }
            return std::process::ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("configuration OK");
        return std::process::ExitCode::SUCCESS;
    }
    if cli.print_config {
        println!("{config:#?}");
        return std::process::ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.loglevel));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let server = match shoal_server::start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shoal-server: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    wait_for_signal();
    tracing::info!("shutting down: draining connections");
    server.shutdown();
    server.wait();
    tracing::info!("bye");
    std::process::ExitCode::SUCCESS
}

fn wait_for_signal() {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shoal-server: signal runtime: {e}");
            return;
        }
    };
    rt.block_on(async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
}
