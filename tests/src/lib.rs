//! Shared test support lives in the test files; this crate only hosts `tests/*.rs`.
