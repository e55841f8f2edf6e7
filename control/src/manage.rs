//! Changing a server after creation: rename, startup variables, build (limits), reinstall,
//! suspend and unsuspend. Every change is stored first and then sent to the node as the
//! server's new spec (no install); a node that is down gets it when it returns for
//! suspension, and at the next change or reinstall otherwise.

use crate::servers::refuse_if_deleting;
use crate::{ControlError, ControlPlane};
use nexus_core::ids::ServerId;
use nexus_core::model::{Server, ServerLimits};
use nexus_core::transport::NodeCommand;
use nexus_eggs::spec::{Editor, SpecBuildError};
use std::collections::BTreeMap;

/// Longest server name.
pub const MAX_NAME_BYTES: usize = 191;

/// A server name: trimmed, 1..=[`MAX_NAME_BYTES`] bytes, one line.
pub fn check_name(name: &str) -> Result<&str, ControlError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ControlError::Invalid { field: "name", reason: format!("1 to {MAX_NAME_BYTES} bytes, one line") });
    }
    Ok(name)
}

impl ControlPlane {
    /// Renames the server (the panel's business only: nodes do not know names).
    pub async fn rename_server(&self, id: ServerId, name: &str) -> Result<Server, ControlError> {
        let name = check_name(name)?.to_owned();
        self.update_server_with(id, |server| {
            server.name.clone_from(&name);
            Ok(())
        })
        .await
    }

    /// Sets startup variables: each value checked by its variable's rules (by `editor`'s
    /// rights: users may change only the variables the egg lets them edit), merged into the
    /// stored values, the spec rebuilt and sent to the node. Nothing changes on a refusal.
    pub async fn update_variables(
        &self,
        id: ServerId,
        values: &BTreeMap<String, String>,
        editor: Editor,
    ) -> Result<Server, ControlError> {
        let current = self.server(id).await?;
        refuse_if_deleting(&current)?;
        let egg = self.egg(current.egg).await?;
        for name in values.keys() {
            // A variable hidden from users is unknown to them: the same answer as a name the
            // egg lacks, so hidden names cannot be found by asking.
            let Some(variable) =
                egg.variables.iter().find(|v| &v.env_variable == name && (editor == Editor::Admin || v.user_viewable))
            else {
                return Err(SpecBuildError::UnknownVariable { name: name.chars().take(64).collect() }.into());
            };
            if editor == Editor::User && !variable.user_editable {
                return Err(SpecBuildError::NotEditable { name: name.clone() }.into());
            }
        }
        // Every value, old and new, checked by its rules as the node will get them, before
        // anything is stored.
        let mut probe = current.clone();
        for (name, value) in values {
            probe.environment.insert(name.clone(), value.trim().to_owned());
        }
        self.spec_of(&probe).await.map_err(|e| hidden_from(editor, &egg, e))?;
        let updated = self
            .update_server_with(id, |server| {
                for (name, value) in values {
                    server.environment.insert(name.clone(), value.trim().to_owned());
                }
                Ok(())
            })
            .await?;
        // The whole set, as the node will run it.
        let spec = self.spec_of(&updated).await?;
        self.deliver_spec(&updated, spec).await?;
        Ok(updated)
    }

    /// Changes the server's limits (admins); placement books the difference. The node
    /// applies them at the next start.
    pub async fn update_build(&self, id: ServerId, limits: ServerLimits) -> Result<Server, ControlError> {
        let current = self.server(id).await?;
        refuse_if_deleting(&current)?;
        let mut probe = current.clone();
        probe.limits = limits;
        // The spec with the new limits must be one a node accepts before anything is stored.
        let spec = self.spec_of(&probe).await?;
        let updated = self
            .update_server_with(id, |server| {
                server.limits = limits;
                Ok(())
            })
            .await?;
        self.refresh_usage(updated.node).await?;
        self.deliver_spec(&updated, spec).await?;
        Ok(updated)
    }

    /// Runs the egg's install script again. The server must not be running (as the node
    /// requires); files are kept, as Pterodactyl's reinstall keeps them.
    pub async fn reinstall_server(&self, id: ServerId) -> Result<(), ControlError> {
        let server = self.server(id).await?;
        refuse_if_deleting(&server)?;
        if server.state.is_active() {
            return Err(ControlError::Running(id));
        }
        if server.suspended {
            return Err(ControlError::Suspended(id));
        }
        // The node installs what it was last given; give it the current spec first.
        let spec = self.spec_of(&server).await?;
        self.send(server.node, NodeCommand::CreateServer { spec: Box::new(spec), install: false }).await?;
        self.send(server.node, NodeCommand::Install { server: id }).await
    }

    /// Suspends (`true`) or unsuspends the server (admins). A suspended server cannot start;
    /// its node stops it if it runs. Stored first: a node that is down is told when it
    /// returns.
    pub async fn set_suspended(&self, id: ServerId, suspended: bool) -> Result<Server, ControlError> {
        let current = self.server(id).await?;
        refuse_if_deleting(&current)?;
        let updated = self
            .update_server_with(id, |server| {
                server.suspended = suspended;
                Ok(())
            })
            .await?;
        let spec = self.spec_of(&updated).await?;
        match self.deliver_spec(&updated, spec).await {
            Ok(()) => {}
            // Stored; reconciliation tells the node when it is back.
            Err(ControlError::Node { source: nexus_core::transport::TransportError::Unreachable(..), .. }) => {
                tracing::info!(server = %id, suspended, "the node is away; it is told when it returns");
            }
            Err(e) => return Err(e),
        }
        Ok(updated)
    }

    /// Sends a changed spec to the node, unless the node never got the server (it gets the
    /// whole spec when it is delivered).
    pub(crate) async fn deliver_spec(
        &self,
        server: &Server,
        spec: nexus_core::transport::ServerSpec,
    ) -> Result<(), ControlError> {
        if server.state == nexus_core::lifecycle::ServerState::Requested {
            return Ok(());
        }
        self.send(server.node, NodeCommand::CreateServer { spec: Box::new(spec), install: false }).await
    }
}

/// `e`, unless it is about a variable `editor` may not see (a stored value or default that
/// no longer passes its rules): users then learn that the configuration is broken, not the
/// hidden variable's name, rule or value.
fn hidden_from(editor: Editor, egg: &nexus_core::model::Egg, e: ControlError) -> ControlError {
    // Any error that names a hidden variable, however it names it (a rule, the environment
    // check, the startup command).
    let hidden = |name: &str| egg.variables.iter().any(|v| v.env_variable == name && !v.user_viewable);
    // Whole names only: a hidden VERSION is not named by an error about MC_VERSION. An error
    // about one variable is masked by that variable alone.
    let masked = match &e {
        ControlError::Spec(spec) => match spec.variable() {
            Some(name) => hidden(name),
            None => e.to_string().split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(hidden),
        },
        _ => false,
    };
    match &e {
        ControlError::Spec(_) if editor == Editor::User && masked => ControlError::Invalid {
            field: "variables",
            reason: "the server's configuration does not pass its egg's rules; ask your host to fix it".into(),
        },
        _ => e,
    }
}
