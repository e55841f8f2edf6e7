//! Who may do what on a server: its owner and admins everything; subusers what they were
//! granted, by Pterodactyl's permission names, so billing systems and existing clients send
//! the names they know.
//!
//! Rules as Pterodactyl's: a subuser is an existing account added by e-mail; nobody can be a
//! subuser of their own server; a subuser may grant only permissions they hold themselves
//! and may not change their own grant. Browser console tokens carry the node-level
//! [`Permission`]s a subuser's names add up to, and only whole groups: `FileWrite` only with
//! every file-changing name, so a token never allows more than the names do.

use crate::{ControlError, ControlPlane};
use chrono::Utc;
use nexus_core::ids::{ServerId, UserId};
use nexus_core::model::{Permission, Role, Server, Subuser, User};
use std::collections::BTreeSet;

/// Every permission name a subuser can hold (Pterodactyl 1.x's, so its clients' payloads
/// are accepted; names for features Nexus does not have yet are kept and grant nothing).
pub const PERMISSIONS: &[&str] = &[
    "websocket.connect",
    "control.console",
    "control.start",
    "control.stop",
    "control.restart",
    "user.create",
    "user.read",
    "user.update",
    "user.delete",
    "file.create",
    "file.read",
    "file.read-content",
    "file.update",
    "file.delete",
    "file.archive",
    "file.sftp",
    "backup.create",
    "backup.read",
    "backup.delete",
    "backup.download",
    "backup.restore",
    "allocation.read",
    "allocation.create",
    "allocation.update",
    "allocation.delete",
    "startup.read",
    "startup.update",
    "startup.docker-image",
    "database.create",
    "database.read",
    "database.update",
    "database.delete",
    "database.view_password",
    "schedule.create",
    "schedule.read",
    "schedule.update",
    "schedule.delete",
    "settings.rename",
    "settings.reinstall",
    "activity.read",
];

/// Most subusers on one server.
pub const MAX_SUBUSERS: usize = 100;

/// How a user stands to a server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerAccess {
    /// The owner: everything.
    Owner,
    /// An admin: everything, install output too.
    Admin,
    /// A subuser with these permission names.
    Subuser(BTreeSet<String>),
}

impl ServerAccess {
    /// Whether this access includes the permission `name` (one of [`PERMISSIONS`]).
    pub fn allows(&self, name: &str) -> bool {
        match self {
            Self::Owner | Self::Admin => true,
            Self::Subuser(names) => names.contains(name),
        }
    }

    /// Every permission name of [`PERMISSIONS`] this access includes, in catalog order.
    pub fn permissions(&self) -> Vec<&'static str> {
        PERMISSIONS.iter().copied().filter(|p| self.allows(p)).collect()
    }

    /// The node-level permissions for a browser token.
    pub fn node_permissions(&self) -> Vec<Permission> {
        let all = |names: &[&str]| names.iter().all(|n| self.allows(n));
        let mut out = Vec::new();
        if all(&["websocket.connect"]) || all(&["control.console"]) {
            out.push(Permission::ConsoleRead);
        }
        let groups: [(Permission, &[&str]); 8] = [
            (Permission::ConsoleWrite, &["control.console"]),
            (Permission::Power, &["control.start", "control.stop", "control.restart"]),
            (Permission::FileRead, &["file.read", "file.read-content"]),
            (Permission::FileWrite, &["file.create", "file.update", "file.delete", "file.archive"]),
            (
                Permission::Backup,
                &["backup.create", "backup.read", "backup.delete", "backup.download", "backup.restore"],
            ),
            (Permission::Schedule, &["schedule.create", "schedule.read", "schedule.update", "schedule.delete"]),
            (Permission::Startup, &["startup.read", "startup.update"]),
            (Permission::Settings, &["settings.rename", "settings.reinstall"]),
        ];
        for (permission, names) in groups {
            if all(names) {
                out.push(permission);
            }
        }
        if *self == Self::Admin {
            out.push(Permission::InstallRead);
        }
        out
    }
}

/// Checks permission names: each must be one of [`PERMISSIONS`].
pub fn check_permissions(names: &BTreeSet<String>) -> Result<(), ControlError> {
    match names.iter().find(|n| !PERMISSIONS.contains(&n.as_str())) {
        Some(unknown) => Err(ControlError::Invalid {
            field: "permissions",
            reason: format!("unknown permission `{}`", unknown.chars().take(64).collect::<String>()),
        }),
        None => Ok(()),
    }
}

impl ControlPlane {
    /// How `user` stands to `server`; `None` when it is not theirs to see.
    pub async fn server_access(&self, user: &User, server: &Server) -> Result<Option<ServerAccess>, ControlError> {
        if user.role == Role::Admin {
            return Ok(Some(ServerAccess::Admin));
        }
        if server.owner == user.id {
            return Ok(Some(ServerAccess::Owner));
        }
        Ok(self.store.get_subuser(server.id, user.id).await?.map(|s| ServerAccess::Subuser(s.permissions)))
    }

    /// Grants the account with `email` the permissions `names` on `server`; `existing`
    /// says whether this changes a grant (`true`: there must be one) or adds one (`false`:
    /// there must be none, `409` otherwise). `by` is the caller's own access (a subuser grants
    /// only what they hold and never changes their own grant).
    pub async fn put_subuser(
        &self,
        server: ServerId,
        email: &str,
        names: BTreeSet<String>,
        existing: bool,
        by: (&User, &ServerAccess),
    ) -> Result<Subuser, ControlError> {
        check_permissions(&names)?;
        let (caller, access) = by;
        if let Some(name) = names.iter().find(|n| !access.allows(n)) {
            return Err(ControlError::Forbidden(format!("you cannot grant `{name}`: you do not hold it")));
        }
        // By e-mail only (not user name), so the field cannot be used to look accounts up
        // by name.
        let Some(user) = self.user_by_email(email).await? else {
            return Err(ControlError::Invalid { field: "email", reason: "no account with this e-mail".into() });
        };
        if user.id == caller.id && matches!(access, ServerAccess::Subuser(_)) {
            return Err(ControlError::Forbidden("you cannot change your own permissions".into()));
        }
        let record = self.server(server).await?;
        if record.owner == user.id {
            return Err(ControlError::Invalid { field: "email", reason: "this account owns the server".into() });
        }
        let current = self.store.list_subusers(server).await?;
        let has = current.iter().any(|s| s.user == user.id);
        if has != existing {
            return Err(if has {
                ControlError::Store(nexus_core::store::StoreError::Duplicate {
                    entity: "subuser",
                    detail: "this account is already a subuser; change its permissions instead".into(),
                })
            } else {
                nexus_core::store::StoreError::not_found("subuser", user.id).into()
            });
        }
        if current.len() >= MAX_SUBUSERS && !has {
            return Err(ControlError::Invalid {
                field: "email",
                reason: format!("a server has at most {MAX_SUBUSERS} subusers"),
            });
        }
        // Permissions the editor does not hold are not theirs to take away either: a change
        // keeps them as they were (only the editor's own part of the grant is replaced).
        let mut names = names;
        if let Some(before) = current.iter().find(|s| s.user == user.id) {
            names.extend(before.permissions.iter().filter(|p| !access.allows(p)).cloned());
        }
        let subuser = Subuser { server, user: user.id, permissions: names, created_at: Utc::now() };
        self.store.put_subuser(&subuser).await?;
        Ok(self.store.get_subuser(server, user.id).await?.unwrap_or(subuser))
    }

    /// Removes `user`'s grant on `server` (a subuser cannot remove their own).
    pub async fn remove_subuser(
        &self,
        server: ServerId,
        user: UserId,
        by: (&User, &ServerAccess),
    ) -> Result<(), ControlError> {
        if by.0.id == user && matches!(by.1, ServerAccess::Subuser(_)) {
            return Err(ControlError::Forbidden("you cannot remove yourself".into()));
        }
        self.store.delete_subuser(server, user).await.map_err(ControlError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> ServerAccess {
        ServerAccess::Subuser(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn tokens_get_only_whole_groups() {
        assert_eq!(names(&["control.console"]).node_permissions(), [Permission::ConsoleRead, Permission::ConsoleWrite]);
        assert_eq!(names(&["file.read"]).node_permissions(), [] as [Permission; 0]);
        assert_eq!(
            names(&["websocket.connect", "file.read", "file.read-content", "file.create"]).node_permissions(),
            [Permission::ConsoleRead, Permission::FileRead]
        );
        assert!(!ServerAccess::Owner.node_permissions().contains(&Permission::InstallRead));
        assert!(ServerAccess::Admin.node_permissions().contains(&Permission::InstallRead));
        assert_eq!(ServerAccess::Owner.node_permissions().len(), Permission::ALL.len());
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(check_permissions(&["control.console".to_owned()].into()).is_ok());
        assert!(check_permissions(&["control.everything".to_owned()].into()).is_err());
    }
}
