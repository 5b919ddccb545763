//! Transactions: MULTI EXEC DISCARD WATCH UNWATCH (being built for issue #3).

use super::{Conn, Spec};
use crate::shared::Shared;

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    Vec::new()
}

/// Releases this connection's state in shared structures.
pub(super) fn on_disconnect(shared: &Shared, conn: &mut Conn) {
    let _ = (shared, conn);
}
