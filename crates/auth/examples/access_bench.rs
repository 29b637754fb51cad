//! In-process figures for `cargo xtask bench access`: the authorization
//! decision with 10,000 grants (p50/p99), rebuilding that index, and audit
//! append throughput on a real store. One JSON object a line on stdout.

use std::time::Instant;

use berth_auth::{Access, Action, Caller, Grant, Identity, Index, NewAuditEntry, Resource, Team, Where};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const USERS: usize = 1_000;
    const TEAMS: usize = 100;
    const GRANTS: usize = 10_000;
    let roles = ["view-only", "restricted-control", "full-control", "scheduler"];
    let users: Vec<String> = (0..USERS).map(|i| format!("user{i}")).collect();
    let teams: Vec<Team> = (0..TEAMS)
        .map(|t| Team {
            name: format!("team{t}"),
            // Every user is in two teams.
            members: users
                .iter()
                .enumerate()
                .filter(|(i, _)| i % TEAMS == t || (i / 10) % TEAMS == t)
                .map(|(_, u)| u.clone())
                .collect(),
            created: String::new(),
        })
        .collect();
    // Half of the grants to users, half to teams, over a three-level tree.
    let grants: Vec<Grant> = (0..GRANTS)
        .map(|i| Grant {
            id: format!("g{i}"),
            subject: if i % 2 == 0 {
                format!("user:user{}", i % USERS)
            } else {
                format!("team:team{}", i % TEAMS)
            },
            role: roles[i % roles.len()].to_string(),
            collection: format!("/org{}/dept{}/team{}", i % 10, i % 37, i % 101),
            created: String::new(),
        })
        .collect();
    let start = Instant::now();
    let index = Index::build(&users, &teams, &[], &[], &grants, &[]);
    let build_ms = start.elapsed().as_secs_f64() * 1000.0;

    let identities: Vec<Identity> = users
        .iter()
        .map(|u| Identity {
            name: u.clone(),
            scopes: None,
            token_id: None,
        })
        .collect();
    let mut samples = Vec::with_capacity(200_000);
    let mut allowed = 0usize;
    for i in 0..200_000usize {
        let who = &identities[(i * 7919) % USERS];
        let collection = format!("/org{}/dept{}/team{}/app", i % 10, i % 37, i % 101);
        let action = [Action::Read, Action::Write, Action::Exec][i % 3];
        let t = Instant::now();
        let d = index.decide(&Caller::User(who), Resource::Container, action, Where::In(&collection));
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        allowed += usize::from(d.allowed());
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({"figure": "decision_p50_us", "value": percentile(&samples, 0.5), "grants": GRANTS, "allowed": allowed})
    );
    println!(
        "{}",
        serde_json::json!({"figure": "decision_p99_us", "value": percentile(&samples, 0.99)})
    );
    println!(
        "{}",
        serde_json::json!({"figure": "index_rebuild_ms", "value": build_ms})
    );

    let dir = std::env::temp_dir().join(format!("berth-access-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> Result<f64, Box<dyn std::error::Error>> {
        let store = berth_store::Store::open(&dir.join("db"))?;
        let (access, _) = Access::open(berth_state::State::open(store)?, &dir)?;
        access.create_user("bench", "bench-password")?;
        let (_, token) = access.create_token("bench", None, &[], "")?;
        let mut auth = Vec::with_capacity(100_000);
        for _ in 0..100_000 {
            let t = Instant::now();
            let ok = access.authenticate_token(&token, Some("127.0.0.1")).is_ok();
            auth.push(t.elapsed().as_secs_f64() * 1e6);
            if !ok {
                return Err("the token did not authenticate".into());
            }
        }
        auth.sort_by(f64::total_cmp);
        println!(
            "{}",
            serde_json::json!({"figure": "token_auth_p50_us", "value": percentile(&auth, 0.5)})
        );
        const APPENDS: usize = 2_000;
        let start = Instant::now();
        for i in 0..APPENDS {
            access.audit_append(NewAuditEntry {
                user: format!("user{}", i % 10),
                source: "127.0.0.1".into(),
                action: "POST /v1/containers".into(),
                resource: "container".into(),
                object: format!("/v1/containers/{i}"),
                result: "allowed".into(),
                status: 201,
                detail: String::new(),
            })?;
        }
        let rate = APPENDS as f64 / start.elapsed().as_secs_f64();
        let v = access.audit_verify()?;
        if !v.ok {
            return Err(format!("audit chain broken: {:?}", v.problems).into());
        }
        Ok(rate)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{}",
        serde_json::json!({"figure": "audit_appends_per_s", "value": result?})
    );
    Ok(())
}
