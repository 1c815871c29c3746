//! The `ramfs:` scheme: a memory filesystem in Redox's terms with RedoxFS's semantics (RedoxFS
//! `src/mount/redox/scheme.rs`), on redox_syscall 0.5.18's `SchemeMut` plus the bridge's
//! `Getdents`. `tree` stores nodes; `path` resolves paths and checks permissions; `scheme` holds
//! the handles and the trait impls, whose operations live in `open`, `io`, `attr` and `names`.

mod attr;
mod io;
mod names;
mod open;
mod path;
mod scheme;
mod tree;

#[cfg(test)]
mod tests;

pub use scheme::RamFs;
