//! Access-control routes: users, teams, organizations, roles, grants,
//! personal access tokens, `whoami`, and the LDAP/AD directories (their
//! configuration, team mappings, on-demand and scheduled sync). Passwords go
//! in, never out (a directory's bind password shows as `***`); a token's
//! secret is shown once, in the response that creates it. Logins through a
//! directory happen in the authorization layer, via
//! [`Access::authenticate_login`].

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;

use crate::json::{views, Json};
use serde::Deserialize;
use serde_json::Value;

use berth_auth::directory::{Directory, DirectoryGroup, DirectoryView, SyncReport};
use berth_auth::{Access, Action, Permission, Resource, TeamListing, TokenView, UserListing, UserView, Where};
use berth_model::access as view;
use berth_model::access::{
    DirectoryTest, DirectoryTestResult, NewGrant, NewMember, NewOrg, NewOrgTeam, NewPassword, NewRole, NewTeam,
    NewToken, NewUser, TokenCreated,
};
use berth_model::ApiError;

use crate::authz::{self, Principal};
use crate::error::ApiResult;
use crate::AppState;

pub(crate) fn access(s: &AppState) -> Result<Arc<Access>, ApiError> {
    s.access
        .clone()
        .ok_or_else(|| ApiError::internal("access control is not available on this daemon"))
}

/// Runs a store or hashing operation off the async workers.
pub(crate) async fn with_access<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&Access) -> berth_auth::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let a = access(s)?;
    Ok(crate::blocking::blocking(move || f(&a)).await??)
}

// --- users ---

pub async fn users(State(s): State<AppState>) -> ApiResult<Json<Vec<UserListing>>> {
    let listed = with_access(&s, |a| {
        let mut accounts = a.directory_accounts()?;
        Ok(a.list_users()?
            .into_iter()
            .map(|user| {
                let account = accounts.remove(&user.name);
                UserListing {
                    user,
                    directory: account.as_ref().map(|a| a.directory.clone()),
                    dn: account.map(|a| a.dn),
                }
            })
            .collect())
    })
    .await?;
    Ok(Json(listed))
}

pub async fn user_create(State(s): State<AppState>, Json(u): Json<NewUser>) -> ApiResult<(StatusCode, Json<UserView>)> {
    let view = with_access(&s, move |a| a.create_user(&u.name, &u.password)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn user_remove(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    if name == "admin" {
        return Err(ApiError::invalid("the bootstrap admin cannot be removed; change its password instead").into());
    }
    with_access(&s, move |a| {
        a.remove_user(&name)?;
        a.forget_directory_records(Some(&name), None)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn user_password(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(p): Json<NewPassword>,
) -> ApiResult<StatusCode> {
    with_access(&s, move |a| {
        if let Some(directory) = a.directory_of(&name)? {
            return Err(berth_auth::Error::Invalid(format!(
                "user {name} logs in through directory {directory}: change the password there"
            )));
        }
        a.set_password(&name, &p.password)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- teams ---

pub async fn teams(State(s): State<AppState>) -> ApiResult<Json<Vec<TeamListing>>> {
    let a = access(&s)?;
    let mut groups = a.team_groups()?;
    Ok(Json(
        a.list_teams()?
            .into_iter()
            .map(|team| TeamListing {
                directory_group: groups.remove(&team.name).map(Into::into),
                team: team.into(),
            })
            .collect(),
    ))
}

pub async fn team_create(
    State(s): State<AppState>,
    Json(t): Json<NewTeam>,
) -> ApiResult<(StatusCode, Json<TeamListing>)> {
    let mapping = match (t.directory, t.group) {
        (Some(directory), Some(group)) => Some(DirectoryGroup { directory, group }),
        (None, None) => None,
        _ => return Err(ApiError::invalid("a synced team needs both a directory and a group").into()),
    };
    let listing = with_access(&s, move |a| {
        if let Some(m) = &mapping {
            a.get_directory(&m.directory)?;
        }
        let team = a.create_team(&t.name)?;
        if let Some(m) = mapping.clone() {
            if let Err(e) = a.set_team_group(&t.name, Some(m)) {
                // No half-made team: the mapping was part of the request.
                if let Err(undo) = a.remove_team(&t.name) {
                    tracing::error!(error = %undo, team = %t.name, "removing a team whose mapping failed");
                }
                return Err(e);
            }
        }
        Ok(TeamListing {
            team: team.into(),
            directory_group: mapping.map(Into::into),
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(listing)))
}

pub async fn team_remove(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    with_access(&s, move |a| {
        a.remove_team(&name)?;
        a.forget_directory_records(None, Some(&name))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn team_directory_set(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(g): Json<view::DirectoryGroup>,
) -> ApiResult<Json<view::DirectoryGroup>> {
    let mapping = DirectoryGroup::from(g.clone());
    with_access(&s, move |a| a.set_team_group(&name, Some(mapping))).await?;
    Ok(Json(g))
}

pub async fn team_directory_unset(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    with_access(&s, move |a| a.set_team_group(&name, None)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn team_add(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(m): Json<NewMember>,
) -> ApiResult<Json<view::Team>> {
    Ok(Json(access(&s)?.set_member(&name, &m.user, true)?.into()))
}

pub async fn team_del(
    State(s): State<AppState>,
    Path((name, user)): Path<(String, String)>,
) -> ApiResult<Json<view::Team>> {
    Ok(Json(access(&s)?.set_member(&name, &user, false)?.into()))
}

// --- organizations ---

pub async fn orgs(State(s): State<AppState>) -> ApiResult<Json<Vec<view::Org>>> {
    Ok(Json(views(access(&s)?.list_orgs()?)))
}

pub async fn org_create(State(s): State<AppState>, Json(o): Json<NewOrg>) -> ApiResult<(StatusCode, Json<view::Org>)> {
    Ok((StatusCode::CREATED, Json(access(&s)?.create_org(&o.name)?.into())))
}

pub async fn org_remove(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    access(&s)?.remove_org(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn org_add(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(t): Json<NewOrgTeam>,
) -> ApiResult<Json<view::Org>> {
    Ok(Json(access(&s)?.set_org_team(&name, &t.team, true)?.into()))
}

pub async fn org_del(
    State(s): State<AppState>,
    Path((name, team)): Path<(String, String)>,
) -> ApiResult<Json<view::Org>> {
    Ok(Json(access(&s)?.set_org_team(&name, &team, false)?.into()))
}

// --- roles and grants ---

pub async fn roles(State(s): State<AppState>) -> ApiResult<Json<Vec<view::Role>>> {
    Ok(Json(views(access(&s)?.list_roles()?)))
}

pub async fn role_create(
    State(s): State<AppState>,
    Json(r): Json<NewRole>,
) -> ApiResult<(StatusCode, Json<view::Role>)> {
    let permissions = r
        .permissions
        .iter()
        .map(|p| {
            Permission::parse(p)
                .ok_or_else(|| ApiError::invalid(format!("invalid permission {p:?}: use resource:action")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        StatusCode::CREATED,
        Json(access(&s)?.create_role(&r.name, &permissions)?.into()),
    ))
}

pub async fn role_remove(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    access(&s)?.remove_role(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn grants(State(s): State<AppState>) -> ApiResult<Json<Vec<view::Grant>>> {
    Ok(Json(views(access(&s)?.list_grants()?)))
}

/// Creating a grant needs grant write on its collection, and a caller may
/// only hand out what it holds there itself: no granting oneself admin.
pub async fn grant_create(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Json(g): Json<NewGrant>,
) -> ApiResult<(StatusCode, Json<view::Grant>)> {
    let a = access(&s)?;
    let collection = berth_auth::collection_path(&g.collection)
        .ok_or_else(|| ApiError::invalid(format!("invalid collection {:?}", g.collection)))?;
    authz::check(&s, &p, Resource::Grant, Action::Write, Where::In(&collection))?;
    if let Principal::User(identity) = &p {
        let role = a
            .role_permissions(&g.role)
            .ok_or_else(|| ApiError::not_found(format!("no such role: {}", g.role)))?;
        let held = authz::index(&s).permissions_in(&identity.name, &collection);
        if !role.is_subset_of(held) {
            return Err(ApiError::new(
                berth_model::ErrorCode::Forbidden,
                format!(
                    "{} may not grant role {} in {collection}: it holds less",
                    identity.name, g.role
                ),
            )
            .into());
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(a.create_grant(&g.subject, &g.role, &collection)?.into()),
    ))
}

pub async fn grant_remove(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let a = access(&s)?;
    let grant = a
        .list_grants()?
        .into_iter()
        .find(|g| g.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no such grant: {id}")))?;
    authz::check(&s, &p, Resource::Grant, Action::Write, Where::In(&grant.collection))?;
    a.remove_grant(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

// --- tokens ---

/// The user a token operation is about: the caller, or another user when
/// the caller may manage users.
fn token_owner(s: &AppState, p: &Principal, requested: Option<String>) -> Result<String, ApiError> {
    let own = match p {
        Principal::User(identity) => Some(identity.name.clone()),
        _ => None,
    };
    match (requested, own) {
        (Some(r), Some(own)) if r == own => Ok(own),
        (None, Some(own)) => Ok(own),
        (None, None) => Ok("admin".into()),
        (Some(r), _) => {
            authz::check(s, p, Resource::User, Action::Write, Where::In("/"))?;
            Ok(r)
        }
    }
}

pub async fn tokens(State(s): State<AppState>, Extension(p): Extension<Principal>) -> ApiResult<Json<Vec<TokenView>>> {
    let a = access(&s)?;
    let all = authz::check(&s, &p, Resource::User, Action::Read, Where::In("/")).is_ok();
    let own = p.name();
    Ok(Json(a.list_tokens((!all).then_some(own.as_str()))?))
}

pub async fn token_create(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    // `POST /v1/auth/token` usually comes without a body.
    let t: NewToken = if body.iter().all(u8::is_ascii_whitespace) {
        NewToken::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid token request: {e}")))?
    };
    let user = token_owner(&s, &p, t.user.clone())?;
    // A token never carries more than the token that created it.
    let scopes = match &p {
        Principal::User(identity) => match &identity.scopes {
            Some(parent) if !parent.iter().any(|x| x == "*") => {
                if t.scopes.is_empty() || !t.scopes.iter().all(|x| parent.contains(x)) {
                    parent.to_vec()
                } else {
                    t.scopes.clone()
                }
            }
            _ => t.scopes.clone(),
        },
        _ => t.scopes.clone(),
    };
    let (view, secret) = access(&s)?.create_token(&user, t.expires_in, &scopes, &t.description)?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: secret,
            id: view.id,
            user: view.user,
            scopes: view.scopes,
            created: view.created,
            expires: view.expires,
        }),
    ))
}

pub async fn token_remove(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let any = authz::check(&s, &p, Resource::User, Action::Write, Where::In("/")).is_ok();
    let own = p.name();
    access(&s)?.remove_token(&id, (!any).then_some(own.as_str()))?;
    Ok(StatusCode::NO_CONTENT)
}

// --- audit ---

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    since: Option<String>,
    user: Option<String>,
    limit: Option<usize>,
}

pub async fn audit(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<berth_model::audit::AuditEntry>>> {
    if let Some(since) = &q.since {
        if chrono::DateTime::parse_from_rfc3339(since).is_err() {
            return Err(ApiError::invalid(format!("invalid --since {since:?}: use RFC 3339")).into());
        }
    }
    let query = berth_auth::AuditQuery {
        since: q.since,
        user: q.user,
        limit: q.limit,
    };
    Ok(Json(views(with_access(&s, move |a| a.audit_list(&query)).await?)))
}

pub async fn audit_verify(State(s): State<AppState>) -> ApiResult<Json<berth_auth::Verification>> {
    Ok(Json(with_access(&s, |a| a.audit_verify()).await?))
}

// --- directories (LDAP / Active Directory) ---

pub async fn directories(State(s): State<AppState>) -> ApiResult<Json<Vec<DirectoryView>>> {
    Ok(Json(access(&s)?.list_directories()?))
}

pub async fn directory(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<DirectoryView>> {
    Ok(Json(access(&s)?.get_directory(&name)?))
}

/// Creates or replaces a directory; the body is its configuration (the
/// name may be left out). An absent or `***` bind password keeps the
/// stored one.
pub async fn directory_put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(mut body): Json<Value>,
) -> ApiResult<(StatusCode, Json<DirectoryView>)> {
    let fields = body
        .as_object_mut()
        .ok_or_else(|| ApiError::invalid("a directory is a JSON object"))?;
    match fields.get("name").and_then(Value::as_str) {
        Some(given) if given != name => {
            return Err(ApiError::invalid(format!("the body names directory {given:?}, the path {name:?}")).into())
        }
        _ => {
            fields.insert("name".into(), Value::String(name.clone()));
        }
    }
    let directory: berth_model::directory::Directory = serde_json::from_value(body)
        .map_err(|e| ApiError::invalid(format!("invalid directory {name}: {}", describe_json_error(&e))))?;
    let directory = Directory::from(directory);
    let (view, created) = with_access(&s, move |a| a.put_directory(directory)).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view)))
}

/// A body error without the values in it: serde's "invalid type" messages
/// quote the value, which could be the bind password.
fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("missing field") || text.starts_with("unknown variant") {
        return text;
    }
    match e.classify() {
        serde_json::error::Category::Data => "a field has the wrong type".into(),
        _ => "malformed JSON".into(),
    }
}

pub async fn directory_remove(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    with_access(&s, move |a| a.remove_directory(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn directories_sync(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Vec<SyncReport>>> {
    let actor = p.name();
    Ok(Json(
        with_access(&s, move |a| a.sync_directories(None, &actor, "api")).await?,
    ))
}

pub async fn directory_sync(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<SyncReport>>> {
    let actor = p.name();
    Ok(Json(
        with_access(&s, move |a| a.sync_directories(Some(&name), &actor, "api")).await?,
    ))
}

/// Checks a directory's connection, service bind and user search (and
/// with a password, the user's bind); changes nothing.
pub async fn directory_test(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(t): Json<DirectoryTest>,
) -> ApiResult<Json<DirectoryTestResult>> {
    let authenticated = t.password.is_some();
    let found = with_access(&s, move |a| a.test_directory(&name, &t.user, t.password.as_deref())).await?;
    Ok(Json(DirectoryTestResult {
        user: found,
        authenticated,
    }))
}
