//! One module per subcommand.

pub mod build;
pub mod clean;
pub mod doctor;
pub mod tag;
pub mod tags;
