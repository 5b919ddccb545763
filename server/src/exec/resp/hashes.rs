//! hashes commands (being built for issue #3).

use super::Spec;

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    Vec::new()
}
