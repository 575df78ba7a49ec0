//! `herald serve`'s settings: command-line flags, environment variables and an optional TOML file.
//!
//! Layout: `settings` declares every setting once (flag, environment variable, file key, help,
//! documented default); `resolve` layers them (flag, then environment, then file, then default)
//! and turns them into the engine's config types; `open_files` fits the stream limit to the
//! open-file limit. `docs_check` (tests) holds `docs/configuration.md` to the declaration.
//! Nothing here starts anything.

#[cfg(test)]
mod docs_check;
mod open_files;
mod resolve;
mod settings;

pub(crate) use open_files::fit_to_open_file_limit;
pub(crate) use resolve::{Backend, ServeConfig};
pub(crate) use settings::{LogFormat, ServeArgs};
