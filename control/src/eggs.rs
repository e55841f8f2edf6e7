//! Eggs: import from a Pterodactyl or Pelican file, export, delete.

use crate::{ControlError, ControlPlane};
use nexus_core::ids::{EggId, NestId};
use nexus_core::model::Egg;
use nexus_core::store::StoreError;
use nexus_eggs::export::{ExportFormat, export_egg};
use nexus_eggs::import::import_egg;

impl ControlPlane {
    /// Imports an egg file (Pterodactyl `PTDL_v1`/`PTDL_v2`, Pelican `PLCN_v3` JSON or YAML)
    /// and stores it. Parsing is bounded in size and depth by `nexus-eggs` and runs on the
    /// blocking pool, so a large file does not hold up other requests.
    pub async fn import_egg(&self, file: Vec<u8>) -> Result<Egg, ControlError> {
        self.import_egg_into(file, None).await
    }

    /// [`import_egg`](Self::import_egg) into `nest` (which must exist).
    pub async fn import_egg_into(&self, file: Vec<u8>, nest: Option<NestId>) -> Result<Egg, ControlError> {
        if let Some(nest) = nest {
            self.store.get_nest(nest).await?;
        }
        let mut egg = tokio::task::spawn_blocking(move || import_egg(&file))
            .await
            .map_err(|e| ControlError::Busy(format!("egg import stopped: {e}")))?
            .map_err(|e| ControlError::Invalid { field: "egg", reason: e.to_string() })?;
        egg.nest = nest;
        self.store.create_egg(&egg).await?;
        Ok(egg)
    }

    /// Replaces egg `id` with the egg in `file`, keeping its id and nest (servers created from
    /// it keep their values; new servers and reinstalls use the new definition).
    pub async fn update_egg_from_file(&self, id: EggId, file: Vec<u8>) -> Result<Egg, ControlError> {
        let old = self.egg(id).await?;
        let mut egg = tokio::task::spawn_blocking(move || import_egg(&file))
            .await
            .map_err(|e| ControlError::Busy(format!("egg import stopped: {e}")))?
            .map_err(|e| ControlError::Invalid { field: "egg", reason: e.to_string() })?;
        egg.id = id;
        egg.nest = old.nest;
        // Attached in the panel, not part of egg files.
        egg.templates = old.templates;
        self.store.update_egg(&egg).await?;
        Ok(egg)
    }

    /// An egg by id.
    pub async fn egg(&self, id: EggId) -> Result<Egg, ControlError> {
        match self.store.get_egg(id).await {
            Ok(egg) => Ok(egg),
            Err(StoreError::NotFound { .. }) => Err(ControlError::UnknownEgg(id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Egg `id` as a file in `format`.
    pub async fn export_egg(&self, id: EggId, format: ExportFormat) -> Result<String, ControlError> {
        let egg = self.egg(id).await?;
        export_egg(&egg, format).map_err(|e| ControlError::Invalid { field: "format", reason: e.to_string() })
    }

    /// Deletes egg `id`; refused (`409`) while servers use it.
    pub async fn delete_egg(&self, id: EggId) -> Result<(), ControlError> {
        self.egg(id).await?;
        self.store.delete_egg(id).await.map_err(ControlError::from)
    }
}
