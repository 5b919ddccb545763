//! `shoal-proxy`: the sharding proxy (ambassador). Built in the proxy issue (#5); this crate holds the place in the workspace layout so dependency directions are fixed from day one.
