//! Subusers and second factors: who may act on a server besides its owner, and how a user
//! proves themselves beyond the password.

use super::accounts::user_exists;
use super::invalid;
use crate::backend::upsert;
use crate::connection::AnyConnection;
use crate::convert::*;
use crate::error::SqlResult;
use crate::schema::{servers, subusers, user_totp};
use diesel::prelude::*;
use nexus_core::ids::*;
use nexus_core::model::*;
use nexus_core::store::StoreError;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = subusers)]
struct SubuserRow {
    server_id: String,
    user_id: String,
    permissions: String,
    created_at: chrono::NaiveDateTime,
}

impl SubuserRow {
    fn new(subuser: &Subuser) -> SqlResult<Self> {
        Ok(Self {
            server_id: subuser.server.to_string(),
            user_id: subuser.user.to_string(),
            permissions: to_json(&subuser.permissions, "subuser permissions")?,
            created_at: to_db_time(subuser.created_at),
        })
    }

    fn into_model(self) -> SqlResult<Subuser> {
        Ok(Subuser {
            server: parse_id(&self.server_id, "subuser server")?,
            user: parse_id(&self.user_id, "subuser user")?,
            permissions: from_json(&self.permissions, "subuser permissions")?,
            created_at: from_db_time(self.created_at),
        })
    }
}

pub(crate) fn put_subuser(c: &mut AnyConnection, subuser: &Subuser) -> SqlResult<()> {
    let row = SubuserRow::new(subuser)?;
    let owner: Option<String> = servers::table.find(&row.server_id).select(servers::owner_id).first(c).optional()?;
    let Some(owner) = owner else {
        return Err(invalid(format!("subuser refers to missing server `{}`", subuser.server)).into());
    };
    if !user_exists(c, &row.user_id)? {
        return Err(invalid(format!("subuser refers to missing user `{}`", subuser.user)).into());
    }
    if owner == row.user_id {
        return Err(invalid(format!("user `{}` owns server `{}`", subuser.user, subuser.server)).into());
    }
    // Only the permissions change on a replace: `created_at` says when the user was first
    // added, which list_subusers orders by.
    upsert!(
        c,
        subusers::table,
        &row,
        (subusers::server_id, subusers::user_id),
        subusers::permissions.eq(&row.permissions)
    )?;
    Ok(())
}

pub(crate) fn get_subuser(c: &mut AnyConnection, server: ServerId, user: UserId) -> SqlResult<Option<Subuser>> {
    let row = subusers::table
        .find((server.to_string(), user.to_string()))
        .select(SubuserRow::as_select())
        .first(c)
        .optional()?;
    row.map(SubuserRow::into_model).transpose()
}

pub(crate) fn list_subusers(c: &mut AnyConnection, server: ServerId) -> SqlResult<Vec<Subuser>> {
    let key = server.to_string();
    if !super::servers::server_exists(c, &key)? {
        return Err(StoreError::not_found("server", server).into());
    }
    let rows: Vec<SubuserRow> = subusers::table
        .filter(subusers::server_id.eq(&key))
        .order((subusers::created_at, subusers::user_id))
        .select(SubuserRow::as_select())
        .load(c)?;
    rows.into_iter().map(SubuserRow::into_model).collect()
}

pub(crate) fn delete_subuser(c: &mut AnyConnection, server: ServerId, user: UserId) -> SqlResult<()> {
    let deleted = diesel::delete(subusers::table.find((server.to_string(), user.to_string()))).execute(c)?;
    if deleted == 0 {
        return Err(StoreError::not_found("subuser", user).into());
    }
    Ok(())
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = user_totp)]
struct TotpRow {
    user_id: String,
    secret: String,
    recovery_hashes: String,
    enabled_at: Option<chrono::NaiveDateTime>,
    last_step: Option<i64>,
}

impl TotpRow {
    fn new(totp: &UserTotp) -> SqlResult<Self> {
        Ok(Self {
            user_id: totp.user.to_string(),
            secret: totp.secret.clone(),
            recovery_hashes: to_json(&totp.recovery_hashes, "recovery code hashes")?,
            enabled_at: to_db_time_opt(totp.enabled_at),
            last_step: totp.last_step.map(|step| to_i64(step, "totp step")).transpose()?,
        })
    }

    fn into_model(self) -> SqlResult<UserTotp> {
        Ok(UserTotp {
            user: parse_id(&self.user_id, "totp user")?,
            secret: self.secret,
            recovery_hashes: from_json(&self.recovery_hashes, "recovery code hashes")?,
            enabled_at: from_db_time_opt(self.enabled_at),
            last_step: self.last_step.map(|step| to_u64(step, "totp step")).transpose()?,
        })
    }
}

pub(crate) fn put_totp(c: &mut AnyConnection, totp: &UserTotp) -> SqlResult<()> {
    let row = TotpRow::new(totp)?;
    if !user_exists(c, &row.user_id)? {
        return Err(invalid(format!("second factor refers to missing user `{}`", totp.user)).into());
    }
    upsert!(
        c,
        user_totp::table,
        &row,
        user_totp::user_id,
        (
            user_totp::secret.eq(&row.secret),
            user_totp::recovery_hashes.eq(&row.recovery_hashes),
            user_totp::enabled_at.eq(row.enabled_at),
            user_totp::last_step.eq(row.last_step),
        )
    )?;
    Ok(())
}

pub(crate) fn get_totp(c: &mut AnyConnection, user: UserId) -> SqlResult<Option<UserTotp>> {
    let row = user_totp::table.find(user.to_string()).select(TotpRow::as_select()).first(c).optional()?;
    row.map(TotpRow::into_model).transpose()
}

pub(crate) fn delete_totp(c: &mut AnyConnection, user: UserId) -> SqlResult<()> {
    if diesel::delete(user_totp::table.find(user.to_string())).execute(c)? == 0 {
        return Err(StoreError::not_found("second factor", user).into());
    }
    Ok(())
}
