//! Nests: named groups of eggs, as in Pterodactyl ("Minecraft", "Source Engine").

use crate::{ControlError, ControlPlane};
use nexus_core::ids::{EggId, NestId};
use nexus_core::model::{Egg, Nest};

/// Longest nest name, bytes.
pub const MAX_NAME: usize = 191;
/// Longest nest description, bytes.
pub const MAX_DESCRIPTION: usize = 2000;

fn checked(name: &str, description: &str) -> Result<(String, String), ControlError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ControlError::Invalid { field: "name", reason: format!("1 to {MAX_NAME} bytes, one line") });
    }
    if description.len() > MAX_DESCRIPTION || description.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ControlError::Invalid {
            field: "description",
            reason: format!("at most {MAX_DESCRIPTION} bytes of text"),
        });
    }
    Ok((name.to_owned(), description.trim().to_owned()))
}

impl ControlPlane {
    /// A new nest (the name is unique: `409 duplicate` otherwise).
    pub async fn create_nest(&self, name: &str, description: &str) -> Result<Nest, ControlError> {
        let (name, description) = checked(name, description)?;
        let nest = Nest { id: NestId::new(), name, description };
        self.store.create_nest(&nest).await?;
        Ok(nest)
    }

    /// Renames or re-describes nest `id`.
    pub async fn update_nest(&self, id: NestId, name: &str, description: &str) -> Result<Nest, ControlError> {
        let (name, description) = checked(name, description)?;
        self.store.get_nest(id).await?;
        let nest = Nest { id, name, description };
        self.store.update_nest(&nest).await?;
        Ok(nest)
    }

    /// Deletes nest `id`; refused (`409 in_use`) while eggs are in it.
    pub async fn delete_nest(&self, id: NestId) -> Result<(), ControlError> {
        self.store.delete_nest(id).await.map_err(ControlError::from)
    }

    /// Puts egg `id` in `nest` (or in none).
    pub async fn move_egg(&self, id: EggId, nest: Option<NestId>) -> Result<Egg, ControlError> {
        let mut egg = self.egg(id).await?;
        if let Some(nest) = nest {
            self.store.get_nest(nest).await?;
        }
        egg.nest = nest;
        self.store.update_egg(&egg).await?;
        Ok(egg)
    }
}
