//! One method per route, typed: the path and query built here, the body
//! and answer named by the types the route table declares. Streams (logs,
//! events, pulls, scans) come back as the response, read with
//! [`ndjson_lines`] into their typed lines, or through [`Client::progress`].

use anyhow::{Context, Result};
use berth_model::access::{
    Bundle, BundleIssued, DirectoryGroup, DirectoryTest, DirectoryTestResult, Grant, LevelView, NewGrant, NewMember,
    NewOrg, NewOrgTeam, NewPassword, NewRole, NewTeam, NewToken, NewUser, Org, RepositoryCollection, Role,
    SetCollection, SetLevel, Team, TeamListing, TokenCreated, TokenView, UserListing, UserView,
};
use berth_model::audit::{AuditEntry, AuditExport, Verification};
use berth_model::directory::{Directory, DirectoryView, SyncReport};
use berth_model::node::{CaStatus, ClusterInfo, JoinTokenView, Node, NodeRole, NodeUpdate};
use berth_model::scan::{
    ScanProgress, ScanRecordSummary, ScanSpec, VulnDbImport, VulnDbStatus, VulnDbUpdateSpec, WebhookState,
};
use berth_model::{
    Container, ContainerCreate, ContainerStats, ContainerWaited, ExecCreate, ExecCreated, GcReport, Image, LoginAnswer,
    LoginRequest, PluginInstall, PluginPushed, PluginView, ProgressLine, SignedScanRecord, SystemInfo, TrustPolicy,
    TrustPolicySpec, VersionInfo, Whoami,
};
use hyper::body::Incoming;
use hyper::{Method, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::transport::{body_capped, empty, json_body, ndjson_lines, query_value, Body, Client, ExitError};

/// The registry token `GET /v2/token` answers (Docker's token protocol).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryToken {
    pub token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

fn seg(s: &str) -> String {
    query_value(s)
}

impl Client {
    async fn post_json<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.json(Method::POST, path, json_body(body)?).await
    }

    async fn done(&self, method: Method, path: &str, body: Body) -> Result<()> {
        self.call(method, path, body).await.map(drop)
    }

    /// Reads a progress stream to its end: `step` sees each step; the
    /// result, or the daemon's error as an [`ExitError`] with status 1.
    pub async fn progress<T: DeserializeOwned>(
        &self,
        resp: Response<Incoming>,
        what: &str,
        mut step: impl FnMut(&ScanProgress),
    ) -> Result<T> {
        let mut result: Option<T> = None;
        let mut error: Option<String> = None;
        ndjson_lines(resp, |line| {
            let l: ProgressLine<ScanProgress, T> =
                serde_json::from_slice(line).with_context(|| format!("bad {what} progress line"))?;
            match l.step.status.as_str() {
                "done" => {
                    result = Some(
                        l.record
                            .with_context(|| format!("the {what} ended without its result"))?,
                    )
                }
                "error" => {
                    error = Some(
                        l.error
                            .map(|e| e.message)
                            .unwrap_or_else(|| format!("the {what} failed")),
                    )
                }
                _ => step(&l.step),
            }
            Ok(())
        })
        .await?;
        if let Some(e) = error {
            return Err(ExitError(1, e).into());
        }
        result.with_context(|| format!("the daemon's {what} stream ended early"))
    }

    // --- system ---

    pub async fn version(&self) -> Result<VersionInfo> {
        self.get("/v1/version").await
    }

    pub async fn info(&self) -> Result<SystemInfo> {
        self.get("/v1/info").await
    }

    pub async fn whoami(&self) -> Result<Whoami> {
        self.get("/v1/whoami").await
    }

    /// The event stream, NDJSON of `berth_model::Event`; `filters` are `key=value`.
    pub async fn events(&self, filters: &[String]) -> Result<Response<Incoming>> {
        let query: Vec<String> = filters.iter().map(|f| format!("filter={}", query_value(f))).collect();
        self.call(Method::GET, &format!("/v1/events?{}", query.join("&")), empty())
            .await
    }

    /// The cluster CA certificate (PEM, at most 64 KiB); `None` when the
    /// daemon has none to give.
    pub async fn ca_pem(&self) -> Result<Option<Vec<u8>>> {
        let resp = self.raw(Method::GET, "/v1/ca.pem", &[], empty()).await?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        body_capped(resp, 64 << 10, "the daemon's CA").await.map(Some)
    }

    // --- containers ---

    pub async fn containers(&self, all: bool) -> Result<Vec<Container>> {
        self.get(&format!("/v1/containers?all={all}")).await
    }

    pub async fn container(&self, name_or_id: &str) -> Result<Container> {
        self.get(&format!("/v1/containers/{}", seg(name_or_id))).await
    }

    pub async fn create_container(&self, spec: &ContainerCreate) -> Result<Container> {
        self.post_json("/v1/containers", spec).await
    }

    /// Creates, starts and attaches in one request: the 101's headers
    /// (the container's id in `berth_model::CONTAINER_ID_HEADER`) and the
    /// framed stream.
    pub async fn run_attached(
        &self,
        spec: &ContainerCreate,
        stdin: bool,
    ) -> Result<(hyper::HeaderMap, hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>)> {
        self.upgrade_with(
            Method::POST,
            &format!("/v1/containers?start=true&stdin={stdin}"),
            json_body(spec)?,
        )
        .await
    }

    pub async fn start_container(&self, name_or_id: &str) -> Result<()> {
        self.done(
            Method::POST,
            &format!("/v1/containers/{}/start", seg(name_or_id)),
            empty(),
        )
        .await
    }

    /// Starts attached: the framed stream.
    pub async fn start_attached(
        &self,
        id: &str,
        stdin: bool,
    ) -> Result<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>> {
        self.upgrade(
            Method::POST,
            &format!("/v1/containers/{}/start?attach=true&stdin={stdin}", seg(id)),
        )
        .await
    }

    pub async fn stop_container(&self, name_or_id: &str, timeout_secs: Option<u64>) -> Result<()> {
        let t = timeout_secs.map(|t| format!("?t={t}")).unwrap_or_default();
        self.done(
            Method::POST,
            &format!("/v1/containers/{}/stop{t}", seg(name_or_id)),
            empty(),
        )
        .await
    }

    pub async fn kill_container(&self, name_or_id: &str, signal: &str) -> Result<()> {
        self.done(
            Method::POST,
            &format!("/v1/containers/{}/kill?signal={}", seg(name_or_id), query_value(signal)),
            empty(),
        )
        .await
    }

    pub async fn remove_container(&self, name_or_id: &str, force: bool) -> Result<()> {
        self.done(
            Method::DELETE,
            &format!("/v1/containers/{}?force={force}", seg(name_or_id)),
            empty(),
        )
        .await
    }

    /// Waits until the container stops (`removed`: until it is gone).
    pub async fn wait_container(&self, name_or_id: &str, removed: bool) -> Result<ContainerWaited> {
        let condition = if removed { "removed" } else { "not-running" };
        self.json(
            Method::POST,
            &format!("/v1/containers/{}/wait?condition={condition}", seg(name_or_id)),
            empty(),
        )
        .await
    }

    /// The log stream, NDJSON of `berth_runtime::shim::LogLine`.
    pub async fn logs(&self, name_or_id: &str, follow: bool, tail: Option<usize>) -> Result<Response<Incoming>> {
        let mut path = format!("/v1/containers/{}/logs?follow={follow}", seg(name_or_id));
        if let Some(n) = tail {
            path.push_str(&format!("&tail={n}"));
        }
        self.call(Method::GET, &path, empty()).await
    }

    pub async fn stats(&self, name_or_id: &str) -> Result<ContainerStats> {
        self.get(&format!("/v1/containers/{}/stats", seg(name_or_id))).await
    }

    pub async fn create_exec(&self, name_or_id: &str, spec: &ExecCreate) -> Result<ExecCreated> {
        self.post_json(&format!("/v1/containers/{}/exec", seg(name_or_id)), spec)
            .await
    }

    /// Starts an exec session: the framed stream.
    pub async fn start_exec(&self, exec_id: &str) -> Result<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>> {
        self.upgrade(Method::POST, &format!("/v1/exec/{}/start", seg(exec_id)))
            .await
    }

    // --- images ---

    pub async fn images(&self) -> Result<Vec<Image>> {
        self.get("/v1/images").await
    }

    pub async fn image(&self, reference: &str) -> Result<Image> {
        self.get(&format!("/v1/images/inspect?ref={}", query_value(reference)))
            .await
    }

    pub async fn tag_image(&self, source: &str, target: &str) -> Result<Image> {
        self.json(
            Method::POST,
            &format!(
                "/v1/images/tag?source={}&target={}",
                query_value(source),
                query_value(target)
            ),
            empty(),
        )
        .await
    }

    /// Untags or removes an image; what went, as Docker lists it.
    pub async fn remove_image(&self, reference: &str, force: bool) -> Result<Vec<String>> {
        self.json(
            Method::DELETE,
            &format!("/v1/images?ref={}&force={force}", query_value(reference)),
            empty(),
        )
        .await
    }

    /// A pull's progress stream, NDJSON of `berth_model::Progress`: one
    /// platform (`platform`, else the node's), or every one.
    pub async fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        all_platforms: bool,
    ) -> Result<Response<Incoming>> {
        let mut path = format!("/v1/images/pull?ref={}", query_value(reference));
        if let Some(p) = platform {
            path.push_str(&format!("&platform={}", query_value(p)));
        }
        if all_platforms {
            path.push_str("&all_platforms=true");
        }
        self.call(Method::POST, &path, empty()).await
    }

    /// A push's progress stream, NDJSON of `berth_model::Progress`.
    pub async fn push(&self, reference: &str) -> Result<Response<Incoming>> {
        self.call(
            Method::POST,
            &format!("/v1/images/push?ref={}", query_value(reference)),
            empty(),
        )
        .await
    }

    /// Loads an image archive; the progress stream.
    pub async fn load(&self, shown_name: &str, archive: Body) -> Result<Response<Incoming>> {
        self.call(
            Method::POST,
            &format!("/v1/images/load?name={}", query_value(shown_name)),
            archive,
        )
        .await
    }

    /// Saves images as a `docker save` archive: the archive's bytes as a stream.
    pub async fn save(&self, references: &[String]) -> Result<Response<Incoming>> {
        let q: Vec<String> = references.iter().map(|r| format!("ref={}", query_value(r))).collect();
        self.call(Method::GET, &format!("/v1/images/save?{}", q.join("&")), empty())
            .await
    }

    pub async fn login(&self, request: &LoginRequest) -> Result<LoginAnswer> {
        self.post_json("/v1/auth/login", request).await
    }

    pub async fn logout(&self, registry: &str) -> Result<LoginAnswer> {
        self.json(
            Method::POST,
            &format!("/v1/auth/logout?registry={}", query_value(registry)),
            empty(),
        )
        .await
    }

    // --- the node's registry ---

    /// Collects garbage, keeping unreferenced blobs younger than `grace_secs`.
    pub async fn registry_gc(&self, grace_secs: u64) -> Result<GcReport> {
        self.json(Method::POST, &format!("/v1/registry/gc?grace={grace_secs}"), empty())
            .await
    }

    pub async fn repository_collections(&self) -> Result<Vec<RepositoryCollection>> {
        self.get("/v1/registry/collections").await
    }

    pub async fn set_repository_collection(&self, prefix: &str, collection: &str) -> Result<RepositoryCollection> {
        self.json(
            Method::PUT,
            &format!("/v1/registry/collections/{}", seg(prefix)),
            json_body(&SetCollection {
                collection: collection.into(),
            })?,
        )
        .await
    }

    pub async fn unset_repository_collection(&self, prefix: &str) -> Result<()> {
        self.done(
            Method::DELETE,
            &format!("/v1/registry/collections/{}", seg(prefix)),
            empty(),
        )
        .await
    }

    /// A registry bearer token for `scope` (`repository:NAME:ACTIONS`).
    pub async fn registry_token(&self, scope: &str) -> Result<RegistryToken> {
        self.get(&format!("/v2/token?service=berth&scope={}", query_value(scope)))
            .await
    }

    // --- users, teams, organizations ---

    pub async fn users(&self) -> Result<Vec<UserListing>> {
        self.get("/v1/users").await
    }

    pub async fn create_user(&self, user: &NewUser) -> Result<UserView> {
        self.post_json("/v1/users", user).await
    }

    pub async fn remove_user(&self, name: &str) -> Result<()> {
        self.done(Method::DELETE, &format!("/v1/users/{}", seg(name)), empty())
            .await
    }

    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        self.done(
            Method::POST,
            &format!("/v1/users/{}/password", seg(name)),
            json_body(&NewPassword {
                password: password.into(),
            })?,
        )
        .await
    }

    pub async fn teams(&self) -> Result<Vec<TeamListing>> {
        self.get("/v1/teams").await
    }

    pub async fn create_team(&self, team: &NewTeam) -> Result<TeamListing> {
        self.post_json("/v1/teams", team).await
    }

    pub async fn remove_team(&self, name: &str) -> Result<()> {
        self.done(Method::DELETE, &format!("/v1/teams/{}", seg(name)), empty())
            .await
    }

    pub async fn add_team_member(&self, team: &str, user: &str) -> Result<Team> {
        self.post_json(
            &format!("/v1/teams/{}/members", seg(team)),
            &NewMember { user: user.into() },
        )
        .await
    }

    pub async fn remove_team_member(&self, team: &str, user: &str) -> Result<Team> {
        self.json(
            Method::DELETE,
            &format!("/v1/teams/{}/members/{}", seg(team), seg(user)),
            empty(),
        )
        .await
    }

    /// Syncs the team from a directory group (`None`: stops syncing it).
    pub async fn set_team_directory(&self, team: &str, group: Option<&DirectoryGroup>) -> Result<()> {
        let path = format!("/v1/teams/{}/directory", seg(team));
        match group {
            Some(g) => self.done(Method::PUT, &path, json_body(g)?).await,
            None => self.done(Method::DELETE, &path, empty()).await,
        }
    }

    pub async fn orgs(&self) -> Result<Vec<Org>> {
        self.get("/v1/orgs").await
    }

    pub async fn create_org(&self, name: &str) -> Result<Org> {
        self.post_json("/v1/orgs", &NewOrg { name: name.into() }).await
    }

    pub async fn remove_org(&self, name: &str) -> Result<()> {
        self.done(Method::DELETE, &format!("/v1/orgs/{}", seg(name)), empty())
            .await
    }

    pub async fn add_org_team(&self, org: &str, team: &str) -> Result<Org> {
        self.post_json(
            &format!("/v1/orgs/{}/teams", seg(org)),
            &NewOrgTeam { team: team.into() },
        )
        .await
    }

    pub async fn remove_org_team(&self, org: &str, team: &str) -> Result<Org> {
        self.json(
            Method::DELETE,
            &format!("/v1/orgs/{}/teams/{}", seg(org), seg(team)),
            empty(),
        )
        .await
    }

    // --- roles, grants, tokens ---

    pub async fn roles(&self) -> Result<Vec<Role>> {
        self.get("/v1/roles").await
    }

    pub async fn create_role(&self, role: &NewRole) -> Result<Role> {
        self.post_json("/v1/roles", role).await
    }

    pub async fn remove_role(&self, name: &str) -> Result<()> {
        self.done(Method::DELETE, &format!("/v1/roles/{}", seg(name)), empty())
            .await
    }

    pub async fn grants(&self) -> Result<Vec<Grant>> {
        self.get("/v1/grants").await
    }

    pub async fn create_grant(&self, grant: &NewGrant) -> Result<Grant> {
        self.post_json("/v1/grants", grant).await
    }

    pub async fn remove_grant(&self, id: &str) -> Result<()> {
        self.done(Method::DELETE, &format!("/v1/grants/{}", seg(id)), empty())
            .await
    }

    pub async fn tokens(&self) -> Result<Vec<TokenView>> {
        self.get("/v1/tokens").await
    }

    pub async fn create_token(&self, token: &NewToken) -> Result<TokenCreated> {
        self.post_json("/v1/tokens", token).await
    }

    pub async fn remove_token(&self, id: &str) -> Result<()> {
        self.done(Method::DELETE, &format!("/v1/tokens/{}", seg(id)), empty())
            .await
    }

    // --- directories ---

    pub async fn directories(&self) -> Result<Vec<DirectoryView>> {
        self.get("/v1/directories").await
    }

    pub async fn directory(&self, name: &str) -> Result<DirectoryView> {
        self.get(&format!("/v1/directories/{}", seg(name))).await
    }

    /// Creates or replaces a directory.
    pub async fn put_directory(&self, directory: &Directory) -> Result<DirectoryView> {
        self.json(
            Method::PUT,
            &format!("/v1/directories/{}", seg(&directory.config.name)),
            json_body(directory)?,
        )
        .await
    }

    pub async fn remove_directory(&self, name: &str) -> Result<()> {
        self.done(Method::DELETE, &format!("/v1/directories/{}", seg(name)), empty())
            .await
    }

    /// Syncs one directory, or every one (`None`).
    pub async fn sync_directories(&self, name: Option<&str>) -> Result<Vec<SyncReport>> {
        let path = match name {
            Some(n) => format!("/v1/directories/{}/sync", seg(n)),
            None => "/v1/directories/sync".to_string(),
        };
        self.json(Method::POST, &path, empty()).await
    }

    pub async fn test_directory(&self, name: &str, test: &DirectoryTest) -> Result<DirectoryTestResult> {
        self.post_json(&format!("/v1/directories/{}/test", seg(name)), test)
            .await
    }

    // --- audit ---

    /// Entries, filtered by `query` (`since=`, `user=`, `limit=`, already encoded).
    pub async fn audit(&self, query: &str) -> Result<Vec<AuditEntry>> {
        self.get(&format!("/v1/audit?{query}")).await
    }

    pub async fn audit_verify(&self) -> Result<Verification> {
        self.get("/v1/audit/verify").await
    }

    pub async fn audit_export(&self) -> Result<AuditExport> {
        self.get("/v1/audit/export").await
    }

    pub async fn audit_levels(&self) -> Result<Vec<LevelView>> {
        self.get("/v1/audit/levels").await
    }

    pub async fn set_audit_level(&self, resource: &str, level: &str) -> Result<LevelView> {
        self.json(
            Method::PUT,
            &format!("/v1/audit/levels/{}", seg(resource)),
            json_body(&SetLevel { level: level.into() })?,
        )
        .await
    }

    // --- client bundles ---

    pub async fn bundles(&self) -> Result<Vec<Bundle>> {
        self.get("/v1/bundles").await
    }

    /// Issues a bundle for `user` (the caller when `None`).
    pub async fn issue_bundle(&self, user: Option<&str>) -> Result<BundleIssued> {
        let path = match user {
            Some(u) => format!("/v1/bundles?user={}", query_value(u)),
            None => "/v1/bundles".to_string(),
        };
        self.json(Method::POST, &path, empty()).await
    }

    pub async fn revoke_bundle(&self, id: &str) -> Result<Bundle> {
        self.json(Method::DELETE, &format!("/v1/bundles/{}", seg(id)), empty())
            .await
    }

    // --- nodes and the cluster ---

    pub async fn nodes(&self) -> Result<Vec<Node>> {
        self.get("/v1/nodes").await
    }

    pub async fn node(&self, id: &str) -> Result<Node> {
        self.get(&format!("/v1/nodes/{}", seg(id))).await
    }

    pub async fn update_node(&self, id: &str, update: &NodeUpdate) -> Result<Node> {
        self.json(Method::PATCH, &format!("/v1/nodes/{}", seg(id)), json_body(update)?)
            .await
    }

    /// Promotes (`Manager`) or demotes (`Worker`) a node.
    pub async fn set_node_role(&self, id: &str, role: NodeRole) -> Result<Node> {
        let verb = match role {
            NodeRole::Manager => "promote",
            NodeRole::Worker => "demote",
        };
        self.json(Method::POST, &format!("/v1/nodes/{}/{verb}", seg(id)), empty())
            .await
    }

    pub async fn remove_node(&self, id: &str, force: bool) -> Result<Node> {
        self.json(Method::DELETE, &format!("/v1/nodes/{}?force={force}", seg(id)), empty())
            .await
    }

    // --- assignments ---

    pub async fn assignments(&self) -> Result<Vec<berth_model::assignment::Assignment>> {
        self.get("/v1/assignments").await
    }

    pub async fn assignment(&self, name: &str) -> Result<berth_model::assignment::Assignment> {
        self.get(&format!("/v1/assignments/{}", seg(name))).await
    }

    pub async fn create_assignment(
        &self,
        spec: &berth_model::assignment::AssignmentSpec,
    ) -> Result<berth_model::assignment::Assignment> {
        self.json(Method::POST, "/v1/assignments", json_body(spec)?).await
    }

    pub async fn remove_assignment(&self, name: &str) -> Result<berth_model::assignment::Assignment> {
        self.json(Method::DELETE, &format!("/v1/assignments/{}", seg(name)), empty())
            .await
    }

    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        self.get("/v1/cluster").await
    }

    /// The cluster CA; a rotation started first when `rotate`.
    pub async fn cluster_ca(&self, rotate: bool) -> Result<CaStatus> {
        match rotate {
            true => self.json(Method::POST, "/v1/cluster/ca/rotate", empty()).await,
            false => self.get("/v1/cluster/ca").await,
        }
    }

    /// `role`'s join token; a new one first when `rotate`.
    pub async fn join_token(&self, role: NodeRole, rotate: bool) -> Result<JoinTokenView> {
        let path = format!("/v1/cluster/join-token/{role}");
        match rotate {
            true => self.json(Method::POST, &format!("{path}/rotate"), empty()).await,
            false => self.get(&path).await,
        }
    }

    /// A backup of cluster state, encrypted with `passphrase`: the file's bytes.
    pub async fn cluster_backup(&self, passphrase: &str) -> Result<Vec<u8>> {
        let body = json_body(&berth_model::node::BackupRequest {
            passphrase: passphrase.to_string(),
        })?;
        let resp = self.call(Method::POST, "/v1/cluster/backup", body).await?;
        crate::transport::body_capped(resp, 1 << 30, "the cluster backup").await
    }

    // --- scans, the vulnerability database, plugins ---

    /// Scans an image: `step` sees each step; the signed record.
    pub async fn scan(&self, spec: &ScanSpec, step: impl FnMut(&ScanProgress)) -> Result<SignedScanRecord> {
        let resp = self.call(Method::POST, "/v1/scans", json_body(spec)?).await?;
        self.progress(resp, "scan", step).await
    }

    /// Record headlines, newest first; of one image when `image` is given.
    pub async fn scan_records(&self, image: Option<&str>) -> Result<Vec<ScanRecordSummary>> {
        match image {
            Some(i) => self.get(&format!("/v1/scans?image={}", query_value(i))).await,
            None => self.get("/v1/scans").await,
        }
    }

    pub async fn scan_record(&self, id: &str) -> Result<SignedScanRecord> {
        self.get(&format!("/v1/scans/{}", seg(id))).await
    }

    pub async fn scan_webhooks(&self) -> Result<Vec<WebhookState>> {
        self.get("/v1/scans/webhooks").await
    }

    pub async fn vulndb_status(&self) -> Result<VulnDbStatus> {
        self.get("/v1/vulndb").await
    }

    /// Downloads and imports OSV exports: `step` sees each step.
    pub async fn vulndb_update(
        &self,
        spec: &VulnDbUpdateSpec,
        step: impl FnMut(&ScanProgress),
    ) -> Result<VulnDbImport> {
        let resp = self.call(Method::POST, "/v1/vulndb/update", json_body(spec)?).await?;
        self.progress(resp, "update", step).await
    }

    /// Imports an OSV export the daemon reads at `path`.
    pub async fn vulndb_import_path(&self, path: &str) -> Result<VulnDbImport> {
        self.json(
            Method::POST,
            &format!("/v1/vulndb/import?path={}", query_value(path)),
            empty(),
        )
        .await
    }

    /// Imports an OSV export sent as the body (`name`: what to call it).
    pub async fn vulndb_import(&self, name: &str, export: Body) -> Result<VulnDbImport> {
        self.json(
            Method::POST,
            &format!("/v1/vulndb/import?name={}", query_value(name)),
            export,
        )
        .await
    }

    pub async fn plugins(&self) -> Result<Vec<PluginView>> {
        self.get("/v1/plugins").await
    }

    /// `GET /v1/plugins/{name}[?version=V]`.
    pub async fn plugin(&self, name: &str, version: Option<&str>) -> Result<PluginView> {
        self.get(&plugin_path(name, version, "")).await
    }

    pub async fn install_plugin(&self, install: &PluginInstall) -> Result<PluginView> {
        self.post_json("/v1/plugins", install).await
    }

    /// Pulls a plugin from a registry (pinned to `digest` when given).
    pub async fn pull_plugin(&self, reference: &str, digest: Option<&str>) -> Result<PluginView> {
        let path = match digest {
            Some(d) => format!(
                "/v1/plugins/pull?ref={}&digest={}",
                query_value(reference),
                query_value(d)
            ),
            None => format!("/v1/plugins/pull?ref={}", query_value(reference)),
        };
        self.json(Method::POST, &path, empty()).await
    }

    pub async fn push_plugin(&self, name: &str, version: Option<&str>, reference: &str) -> Result<PluginPushed> {
        let mut path = format!("/v1/plugins/{}/push?ref={}", seg(name), query_value(reference));
        if let Some(v) = version {
            path.push_str(&format!("&version={}", query_value(v)));
        }
        self.json(Method::POST, &path, empty()).await
    }

    /// `enable`, `disable` (POST) or removal (DELETE) of a plugin.
    pub async fn plugin_action(&self, name: &str, version: Option<&str>, action: PluginAction) -> Result<PluginView> {
        match action {
            PluginAction::Enable => {
                self.json(Method::POST, &plugin_path(name, version, "/enable"), empty())
                    .await
            }
            PluginAction::Disable => {
                self.json(Method::POST, &plugin_path(name, version, "/disable"), empty())
                    .await
            }
            PluginAction::Remove => {
                self.json(Method::DELETE, &plugin_path(name, version, ""), empty())
                    .await
            }
        }
    }

    // --- trust policies ---

    pub async fn trust_policies(&self) -> Result<Vec<TrustPolicy>> {
        self.get("/v1/trust/policies").await
    }

    pub async fn put_trust_policy(&self, pattern: &str, spec: &TrustPolicySpec) -> Result<TrustPolicy> {
        self.json(
            Method::PUT,
            &format!("/v1/trust/policies/{}", seg(pattern)),
            json_body(spec)?,
        )
        .await
    }

    pub async fn remove_trust_policy(&self, pattern: &str) -> Result<()> {
        self.done(Method::DELETE, &format!("/v1/trust/policies/{}", seg(pattern)), empty())
            .await
    }
}

/// What to do to an installed plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginAction {
    Enable,
    Disable,
    Remove,
}

/// `/v1/plugins/{name}{action}[?version=V]`.
fn plugin_path(name: &str, version: Option<&str>, action: &str) -> String {
    let mut path = format!("/v1/plugins/{}{action}", seg(name));
    if let Some(v) = version {
        path.push_str(&format!("?version={}", query_value(v)));
    }
    path
}
