//! Users, API keys, the audit log.

use super::{duplicate, in_use, invalid};
use crate::connection::AnyConnection;
use crate::convert::*;
use crate::error::SqlResult;
use crate::schema::{api_keys, audit_logs, servers, users};
use diesel::prelude::*;
use nexus_core::ids::*;
use nexus_core::model::*;
use nexus_core::store::{Page, StoreError};

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = users)]
struct UserRow {
    id: String,
    username: String,
    username_key: String,
    email: String,
    email_key: String,
    password_hash: String,
    role: String,
    created_at: chrono::NaiveDateTime,
}

impl UserRow {
    fn new(user: &User) -> SqlResult<Self> {
        Ok(Self {
            id: user.id.to_string(),
            username: user.username.clone(),
            username_key: login_key(&user.username),
            email: user.email.clone(),
            email_key: login_key(&user.email),
            password_hash: user.password_hash.clone(),
            role: enum_name(&user.role, "user role")?,
            created_at: to_db_time(user.created_at),
        })
    }

    fn into_model(self) -> SqlResult<User> {
        Ok(User {
            id: parse_id(&self.id, "user id")?,
            username: self.username,
            email: self.email,
            password_hash: self.password_hash,
            role: parse_enum(&self.role, "user role")?,
            created_at: from_db_time(self.created_at),
        })
    }
}

pub(crate) fn user_exists(c: &mut AnyConnection, id: &str) -> SqlResult<bool> {
    Ok(users::table.find(id).select(users::id).first::<String>(c).optional()?.is_some())
}

/// Username and e-mail are unique, case-insensitively, among users other than `user` itself.
fn check_user_unique(c: &mut AnyConnection, row: &UserRow, user: &User) -> SqlResult<()> {
    let others = users::table.filter(users::id.ne(&row.id));
    let name_taken = others.filter(users::username_key.eq(&row.username_key)).count().get_result::<i64>(c)? > 0;
    if name_taken {
        return Err(duplicate("user", format!("username `{}`", user.username)).into());
    }
    let others = users::table.filter(users::id.ne(&row.id));
    let email_taken = others.filter(users::email_key.eq(&row.email_key)).count().get_result::<i64>(c)? > 0;
    if email_taken {
        return Err(duplicate("user", format!("e-mail `{}`", user.email)).into());
    }
    Ok(())
}

pub(crate) fn create_user(c: &mut AnyConnection, user: &User) -> SqlResult<()> {
    let row = UserRow::new(user)?;
    if user_exists(c, &row.id)? {
        return Err(duplicate("user", format!("id `{}`", user.id)).into());
    }
    check_user_unique(c, &row, user)?;
    diesel::insert_into(users::table).values(&row).execute(c)?;
    Ok(())
}

/// Inserts many users at once, unchecked (seeding benchmarks).
#[cfg(feature = "testing")]
pub(crate) fn insert_users(c: &mut AnyConnection, batch: &[User]) -> SqlResult<()> {
    let rows: Vec<UserRow> = batch.iter().map(UserRow::new).collect::<SqlResult<_>>()?;
    for chunk in rows.chunks(super::infra::INSERT_CHUNK) {
        crate::backend::insert_rows!(c, users::table, chunk)?;
    }
    Ok(())
}

pub(crate) fn get_user(c: &mut AnyConnection, id: UserId) -> SqlResult<User> {
    let row = users::table.find(id.to_string()).select(UserRow::as_select()).first(c).optional()?;
    row.ok_or_else(|| StoreError::not_found("user", id))?.into_model()
}

pub(crate) fn find_user_by_login(c: &mut AnyConnection, login: &str) -> SqlResult<Option<User>> {
    let key = login_key(login);
    // A username match wins over an e-mail match, as in MemoryStore.
    let by_name = users::table.filter(users::username_key.eq(&key)).select(UserRow::as_select()).first(c).optional()?;
    let row = match by_name {
        Some(row) => Some(row),
        None => users::table.filter(users::email_key.eq(&key)).select(UserRow::as_select()).first(c).optional()?,
    };
    row.map(UserRow::into_model).transpose()
}

pub(crate) fn list_users(c: &mut AnyConnection, page: Page) -> SqlResult<Vec<User>> {
    let (offset, limit) = crate::convert::page(page);
    let rows: Vec<UserRow> = users::table
        .order((users::username_key, users::id))
        .offset(offset)
        .limit(limit)
        .select(UserRow::as_select())
        .load(c)?;
    rows.into_iter().map(UserRow::into_model).collect()
}

pub(crate) fn update_user(c: &mut AnyConnection, user: &User) -> SqlResult<()> {
    let row = UserRow::new(user)?;
    if !user_exists(c, &row.id)? {
        return Err(StoreError::not_found("user", user.id).into());
    }
    check_user_unique(c, &row, user)?;
    diesel::update(users::table.find(&row.id)).set(&row).execute(c)?;
    Ok(())
}

pub(crate) fn delete_user(c: &mut AnyConnection, id: UserId) -> SqlResult<()> {
    let key = id.to_string();
    if !user_exists(c, &key)? {
        return Err(StoreError::not_found("user", id).into());
    }
    let owned = servers::table.filter(servers::owner_id.eq(&key)).count().get_result::<i64>(c)?;
    if owned > 0 {
        return Err(in_use("user", id, format!("owns {owned} server(s)")).into());
    }
    // The user's API keys, subuser grants and second factor go with it (ON DELETE CASCADE):
    // keys and grants act with the user's rights, and a new user must not inherit a factor.
    diesel::delete(users::table.find(&key)).execute(c)?;
    Ok(())
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
struct ApiKeyRow {
    id: String,
    user_id: String,
    prefix: String,
    secret_hash: String,
    memo: String,
    scope: String,
    created_at: chrono::NaiveDateTime,
    last_used_at: Option<chrono::NaiveDateTime>,
    expires_at: Option<chrono::NaiveDateTime>,
    allowed_ips: String,
}

impl ApiKeyRow {
    fn new(key: &ApiKey) -> SqlResult<Self> {
        Ok(Self {
            id: key.id.to_string(),
            user_id: key.user.to_string(),
            prefix: key.prefix.clone(),
            secret_hash: key.secret_hash.clone(),
            memo: key.memo.clone(),
            scope: enum_name(&key.scope, "api key scope")?,
            created_at: to_db_time(key.created_at),
            last_used_at: to_db_time_opt(key.last_used_at),
            expires_at: to_db_time_opt(key.expires_at),
            allowed_ips: to_json(&key.allowed_ips, "api key allowed ips")?,
        })
    }

    fn into_model(self) -> SqlResult<ApiKey> {
        Ok(ApiKey {
            id: parse_id(&self.id, "api key id")?,
            user: parse_id(&self.user_id, "api key user")?,
            prefix: self.prefix,
            secret_hash: self.secret_hash,
            memo: self.memo,
            scope: parse_enum(&self.scope, "api key scope")?,
            created_at: from_db_time(self.created_at),
            last_used_at: from_db_time_opt(self.last_used_at),
            expires_at: from_db_time_opt(self.expires_at),
            allowed_ips: from_json(&self.allowed_ips, "api key allowed ips")?,
        })
    }
}

fn api_key_exists(c: &mut AnyConnection, id: &str) -> SqlResult<bool> {
    Ok(api_keys::table.find(id).select(api_keys::id).first::<String>(c).optional()?.is_some())
}

pub(crate) fn create_api_key(c: &mut AnyConnection, key: &ApiKey) -> SqlResult<()> {
    let row = ApiKeyRow::new(key)?;
    if api_key_exists(c, &row.id)? {
        return Err(duplicate("api key", format!("id `{}`", key.id)).into());
    }
    let prefix_taken = api_keys::table.filter(api_keys::prefix.eq(&row.prefix)).count().get_result::<i64>(c)? > 0;
    if prefix_taken {
        return Err(duplicate("api key", format!("prefix `{}`", key.prefix)).into());
    }
    if !user_exists(c, &row.user_id)? {
        return Err(invalid(format!("api key `{}` refers to missing user `{}`", key.id, key.user)).into());
    }
    diesel::insert_into(api_keys::table).values(&row).execute(c)?;
    Ok(())
}

pub(crate) fn find_api_key(c: &mut AnyConnection, prefix: &str) -> SqlResult<Option<ApiKey>> {
    let row = api_keys::table.filter(api_keys::prefix.eq(prefix)).select(ApiKeyRow::as_select()).first(c).optional()?;
    row.map(ApiKeyRow::into_model).transpose()
}

pub(crate) fn list_api_keys(c: &mut AnyConnection, user: UserId) -> SqlResult<Vec<ApiKey>> {
    let user_id = user.to_string();
    if !user_exists(c, &user_id)? {
        return Err(StoreError::not_found("user", user).into());
    }
    let rows: Vec<ApiKeyRow> = api_keys::table
        .filter(api_keys::user_id.eq(&user_id))
        .order((api_keys::created_at.desc(), api_keys::id))
        .select(ApiKeyRow::as_select())
        .load(c)?;
    rows.into_iter().map(ApiKeyRow::into_model).collect()
}

pub(crate) fn touch_api_key(c: &mut AnyConnection, id: ApiKeyId, at: chrono::DateTime<chrono::Utc>) -> SqlResult<()> {
    let key = id.to_string();
    if !api_key_exists(c, &key)? {
        return Err(StoreError::not_found("api key", id).into());
    }
    diesel::update(api_keys::table.find(&key)).set(api_keys::last_used_at.eq(Some(to_db_time(at)))).execute(c)?;
    Ok(())
}

pub(crate) fn delete_api_key(c: &mut AnyConnection, id: ApiKeyId) -> SqlResult<()> {
    let deleted = diesel::delete(api_keys::table.find(id.to_string())).execute(c)?;
    if deleted == 0 {
        return Err(StoreError::not_found("api key", id).into());
    }
    Ok(())
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_logs)]
struct AuditRow {
    id: String,
    actor_id: Option<String>,
    action: String,
    subject_kind: String,
    subject_id: Option<String>,
    metadata: String,
    ip: Option<String>,
    at: chrono::NaiveDateTime,
}

/// An audit subject as (kind, id) columns.
fn subject_columns(subject: &AuditSubject) -> (&'static str, Option<String>) {
    match subject {
        AuditSubject::Panel => ("panel", None),
        AuditSubject::User(id) => ("user", Some(id.to_string())),
        AuditSubject::Node(id) => ("node", Some(id.to_string())),
        AuditSubject::Server(id) => ("server", Some(id.to_string())),
    }
}

impl AuditRow {
    fn new(event: &AuditEvent) -> SqlResult<Self> {
        let (kind, subject) = subject_columns(&event.subject);
        Ok(Self {
            id: event.id.to_string(),
            actor_id: event.actor.map(|a| a.to_string()),
            action: event.action.clone(),
            subject_kind: kind.to_owned(),
            subject_id: subject,
            metadata: to_json(&event.metadata, "audit metadata")?,
            ip: event.ip.clone(),
            at: to_db_time(event.at),
        })
    }

    fn into_model(self) -> SqlResult<AuditEvent> {
        let subject_id = || -> SqlResult<uuid::Uuid> {
            let id = self.subject_id.as_deref().ok_or_else(|| {
                crate::error::SqlError::corrupt("audit subject", format!("`{}` without an id", self.subject_kind))
            })?;
            parse_id(id, "audit subject id")
        };
        let subject = match self.subject_kind.as_str() {
            "panel" => AuditSubject::Panel,
            "user" => AuditSubject::User(subject_id()?.into()),
            "node" => AuditSubject::Node(subject_id()?.into()),
            "server" => AuditSubject::Server(subject_id()?.into()),
            other => return Err(crate::error::SqlError::corrupt("audit subject", format!("unknown kind `{other}`"))),
        };
        Ok(AuditEvent {
            id: parse_id(&self.id, "audit id")?,
            actor: self.actor_id.as_deref().map(|a| parse_id(a, "audit actor")).transpose()?,
            action: self.action,
            subject,
            metadata: from_json(&self.metadata, "audit metadata")?,
            ip: self.ip,
            at: from_db_time(self.at),
        })
    }
}

pub(crate) fn append_audit(c: &mut AnyConnection, event: &AuditEvent) -> SqlResult<()> {
    let row = AuditRow::new(event)?;
    let taken = audit_logs::table.filter(audit_logs::id.eq(&row.id)).count().get_result::<i64>(c)? > 0;
    if taken {
        return Err(duplicate("audit event", format!("id `{}`", event.id)).into());
    }
    diesel::insert_into(audit_logs::table).values(&row).execute(c)?;
    Ok(())
}

pub(crate) fn list_audit(
    c: &mut AnyConnection,
    subject: Option<&AuditSubject>,
    page: Page,
) -> SqlResult<Vec<AuditEvent>> {
    let (offset, limit) = crate::convert::page(page);
    let mut query = audit_logs::table.into_boxed();
    if let Some(subject) = subject {
        let (kind, id) = subject_columns(subject);
        query = query.filter(audit_logs::subject_kind.eq(kind));
        query = match id {
            Some(id) => query.filter(audit_logs::subject_id.eq(id)),
            None => query.filter(audit_logs::subject_id.is_null()),
        };
    }
    // Newest first; equal timestamps: last appended first.
    let rows: Vec<AuditRow> = query
        .order((audit_logs::at.desc(), audit_logs::seq.desc()))
        .offset(offset)
        .limit(limit)
        .select(AuditRow::as_select())
        .load(c)?;
    rows.into_iter().map(AuditRow::into_model).collect()
}
