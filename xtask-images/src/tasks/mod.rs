//! One module per subcommand.

pub mod build;
pub mod check;
pub mod clean;
pub mod context;
pub mod doctor;
pub mod init;
pub mod layers;
pub mod plan;
pub mod pull;
pub mod push;
pub mod release;
pub mod rollback;
pub mod sbom;
pub mod scan;
pub mod tag;
pub mod tags;
pub mod test;
pub mod verify;

use anyhow::Result;

use crate::engine::Engine;
use crate::project::Ctx;

/// Removes one name of a manifest list (podman 4.3 refuses `untag` and `rmi` of list names) and,
/// if `images_too`, of an image, leaving the image while other names or containers hold it.
pub fn remove_name(ctx: &Ctx, engine: &Engine, name: &str, images_too: bool) -> Result<()> {
    if ctx.sh.probe(&engine.manifest_exists(name))?.success() {
        ctx.sh.run(&engine.manifest_rm(name))
    } else if images_too && ctx.sh.probe(&engine.image_exists(name))?.success() {
        ctx.sh.run(&engine.untag(&[name.to_string()])[0])
    } else {
        Ok(())
    }
}
