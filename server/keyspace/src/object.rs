//! Collection values (hash, list, set, sorted set) held by non-string entries.
//!
//! Each type lives in `types/` and keeps its own byte count up to date so the
//! keyspace can account memory without walking the collection: `mem_usage` must
//! be O(1) and must change exactly by what an operation allocates or frees
//! (approximately, at allocator granularity).

use crate::entry::Kind;
use crate::types::{Hash, List, Set, ZSet};

/// A collection value.
#[derive(Clone, Debug)]
pub enum Object {
    /// Hash.
    Hash(Hash),
    /// List.
    List(List),
    /// Set.
    Set(Set),
    /// Sorted set.
    ZSet(ZSet),
}

impl Object {
    /// The kind of this object.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Hash(_) => Kind::Hash,
            Object::List(_) => Kind::List,
            Object::Set(_) => Kind::Set,
            Object::ZSet(_) => Kind::ZSet,
        }
    }

    /// Approximate bytes allocated by the collection (O(1)).
    pub fn mem_usage(&self) -> usize {
        match self {
            Object::Hash(h) => h.mem_usage(),
            Object::List(l) => l.mem_usage(),
            Object::Set(s) => s.mem_usage(),
            Object::ZSet(z) => z.mem_usage(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Object::Hash(h) => h.len(),
            Object::List(l) => l.len(),
            Object::Set(s) => s.len(),
            Object::ZSet(z) => z.len(),
        }
    }

    /// Whether the collection is empty (Redis deletes empty collections).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Redis's OBJECT ENCODING name for the current representation.
    pub fn encoding(&self) -> &'static str {
        match self {
            Object::Hash(h) => h.encoding(),
            Object::List(l) => l.encoding(),
            Object::Set(s) => s.encoding(),
            Object::ZSet(z) => z.encoding(),
        }
    }
}

/// One collection type, viewed through [`Object`]: lets command code look up
/// and create collections generically instead of matching variants per type.
pub trait ObjectKind: Default + Sized {
    /// This type's view of `o`, if `o` holds this type.
    fn of(o: &Object) -> Option<&Self>;
    /// Mutable view.
    fn of_mut(o: &mut Object) -> Option<&mut Self>;
    /// Wraps a value into an [`Object`].
    fn wrap(self) -> Object;
    /// Whether the collection is empty.
    fn empty(&self) -> bool;
}

macro_rules! object_kind {
    ($t:ty, $v:ident) => {
        impl ObjectKind for $t {
            fn of(o: &Object) -> Option<&Self> {
                match o {
                    Object::$v(x) => Some(x),
                    _ => None,
                }
            }
            fn of_mut(o: &mut Object) -> Option<&mut Self> {
                match o {
                    Object::$v(x) => Some(x),
                    _ => None,
                }
            }
            fn wrap(self) -> Object {
                Object::$v(self)
            }
            fn empty(&self) -> bool {
                self.is_empty()
            }
        }
    };
}

object_kind!(Hash, Hash);
object_kind!(List, List);
object_kind!(Set, Set);
object_kind!(ZSet, ZSet);
