//! The replication state file (`<dir>/shoal-repl.state`): the configuration
//! epoch, the role, and the addresses of servers that replicated from this one.
//! Written on every change of epoch, role or peers (small; atomic rename), read
//! at start so a primary that comes back knows it may be stale and whom to ask.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::Repl;

/// What [`load`] found.
#[derive(Default)]
pub struct Restored {
    /// The file says this server was a primary and knows former replicas.
    pub was_primary_with_peers: bool,
}

fn path(repl: &Repl) -> Option<PathBuf> {
    (!repl.dir.is_empty()).then(|| PathBuf::from(&repl.dir).join("shoal-repl.state"))
}

/// Reads the state file, if any, into `repl` (epoch, peers).
pub fn load(repl: &Repl) -> Restored {
    let mut r = Restored::default();
    let Some(p) = path(repl) else { return r };
    let Ok(text) = std::fs::read_to_string(&p) else {
        return r;
    };
    let mut primary = false;
    for line in text.lines() {
        let mut it = line.splitn(2, ' ');
        match (it.next(), it.next()) {
            (Some("epoch"), Some(v)) => {
                if let Ok(e) = v.trim().parse::<u64>() {
                    repl.epoch.store(e, Ordering::SeqCst);
                }
            }
            (Some("role"), Some(v)) => primary = v.trim() == "primary",
            (Some("peer"), Some(v)) => {
                repl.peers.lock().insert(v.trim().to_string());
            }
            _ => {}
        }
    }
    r.was_primary_with_peers = primary && !repl.peers.lock().is_empty();
    r
}

/// Writes the state file (no-op without `dir`). Errors are logged, not fatal.
pub fn save(repl: &Repl) {
    let Some(p) = path(repl) else { return };
    let mut text = format!(
        "epoch {}\nrole {}\n",
        repl.epoch.load(Ordering::SeqCst),
        if repl.is_replica() {
            "replica"
        } else {
            "primary"
        }
    );
    for peer in repl.peers.lock().iter() {
        text.push_str(&format!("peer {peer}\n"));
    }
    let tmp = p.with_extension("tmp");
    let r = std::fs::create_dir_all(&repl.dir)
        .and_then(|()| std::fs::write(&tmp, text))
        .and_then(|()| std::fs::rename(&tmp, &p));
    if let Err(e) = r {
        tracing::warn!("writing {}: {e}", p.display());
    }
}
