//! Template layers attached to eggs and servers. A server's node applies the egg's layers,
//! then the server's, after the install script (see `nexus-templates` for the merge rules);
//! a change takes effect at the next install or reinstall.

use crate::servers::refuse_if_deleting;
use crate::{ControlError, ControlPlane};
use nexus_core::ids::{EggId, ServerId};
use nexus_core::model::{Egg, Server};
use nexus_core::template::LayerRef;

/// Most layers one egg or server may list.
pub const MAX_LAYERS: usize = 16;

/// Checks a layer list: at most [`MAX_LAYERS`], none twice.
pub fn check_layers(layers: &[LayerRef]) -> Result<(), ControlError> {
    if layers.len() > MAX_LAYERS {
        return Err(ControlError::Invalid { field: "templates", reason: format!("at most {MAX_LAYERS} layers") });
    }
    for (i, layer) in layers.iter().enumerate() {
        if layers[..i].contains(layer) {
            return Err(ControlError::Invalid { field: "templates", reason: format!("{layer} is listed twice") });
        }
    }
    Ok(())
}

impl ControlPlane {
    /// Sets the layers every server of egg `id` gets (from its next install on).
    pub async fn set_egg_templates(&self, id: EggId, layers: Vec<LayerRef>) -> Result<Egg, ControlError> {
        check_layers(&layers)?;
        let mut egg = self.egg(id).await?;
        egg.templates = layers;
        self.store.update_egg(&egg).await?;
        Ok(egg)
    }

    /// Sets server `id`'s own layers (applied after its egg's, from its next install on) and
    /// sends its node the new spec.
    pub async fn set_server_templates(&self, id: ServerId, layers: Vec<LayerRef>) -> Result<Server, ControlError> {
        check_layers(&layers)?;
        let current = self.server(id).await?;
        refuse_if_deleting(&current)?;
        let updated = self
            .update_server_with(id, |server| {
                server.templates.clone_from(&layers);
                Ok(())
            })
            .await?;
        let spec = self.spec_of(&updated).await?;
        self.deliver_spec(&updated, spec).await?;
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_bounded_and_without_repeats() {
        let layer = |s: &str| s.parse::<LayerRef>().unwrap();
        assert!(check_layers(&[layer("a@1"), layer("b@1")]).is_ok());
        assert!(check_layers(&[layer("a@1"), layer("a@1")]).is_err());
        let many: Vec<LayerRef> = (0..=MAX_LAYERS).map(|i| layer(&format!("l{i}@1"))).collect();
        assert!(check_layers(&many).is_err());
    }
}
