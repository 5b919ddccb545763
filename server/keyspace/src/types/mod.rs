//! The collection types. Each keeps an O(1) byte count (`mem_usage`).

mod hash;
mod list;
mod set;
mod zset;

pub use hash::Hash;
pub use list::List;
pub use set::Set;
pub use zset::ZSet;
