//! Redis Hash values.

/// A hash value.
#[derive(Clone, Debug, Default)]
pub struct Hash {
    len: usize,
}

impl Hash {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Approximate allocated bytes.
    pub fn mem_usage(&self) -> usize {
        0
    }

    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        "listpack"
    }
}
