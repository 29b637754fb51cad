//! LDAP and Active Directory end to end: a real daemon with its loopback
//! TCP listener and a real `slapd` per test (an OpenLDAP-style directory and
//! an AD-like one with `sAMAccountName` and `memberOf`), configured through
//! the CLI. Directory users log in over TCP and are provisioned; a team
//! mapped to a group gives them a grant; leaving the group and a sync (on
//! demand, or the daemon's schedule) takes it away; wrong passwords are
//! refused, audited and locked out; no password reaches a log. Groups
//! larger than the service account's size limit are read in pages, a read
//! the server cuts short changes nothing, and nested groups count.
//!
//! Needs the Debian packages `slapd` and `ldap-utils`: without them the
//! tests fail and say so.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{base64, free_port, http, wait_for, Daemon, HttpResponse as Resp};
use serde_json::Value;

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const SLAPPASSWD: &str = "/usr/sbin/slappasswd";
const LDAPMODIFY: &str = "/usr/bin/ldapmodify";
const LDAPSEARCH: &str = "/usr/bin/ldapsearch";

const ROOT_PASSWORD: &str = "root-Qx71-secret";
const SERVICE_PASSWORD: &str = "svc-Mb38-secret";
const ALICE_PASSWORD: &str = "alice-Ty52-secret";
const BOB_PASSWORD: &str = "bob-Gk19-secret";
const CAROL_PASSWORD: &str = "carol-Pz84-secret";
const WRONG_PASSWORD: &str = "wrong-Hd66-guess";
const SECRETS: &[&str] = &[
    ROOT_PASSWORD,
    SERVICE_PASSWORD,
    ALICE_PASSWORD,
    BOB_PASSWORD,
    CAROL_PASSWORD,
    WRONG_PASSWORD,
];

const OPENLDAP_SUFFIX: &str = "dc=example,dc=org";
const AD_SUFFIX: &str = "dc=corp,dc=example,dc=com";
const DEVELOPERS: &str = "cn=developers,ou=groups,dc=example,dc=org";
const AD_DEVELOPERS: &str = "CN=Developers,OU=Groups,DC=corp,DC=example,DC=com";
const AD_DOMAIN_USERS: &str = "CN=Domain Users,OU=Groups,DC=corp,DC=example,DC=com";
const AD_BIG_TEAM: &str = "CN=Big Team,OU=Groups,DC=corp,DC=example,DC=com";
const AD_SERVICE: &str = "CN=svc-berth,OU=Service Accounts,DC=corp,DC=example,DC=com";
/// A service account whose paged searches stop at 3 entries, as its plain
/// searches do.
const AD_CAPPED_SERVICE: &str = "CN=svc-capped,OU=Service Accounts,DC=corp,DC=example,DC=com";

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    OpenLdap,
    ActiveDirectory,
}

/// A running `slapd` on a free loopback port; dropping it kills the
/// process (by its handle) and removes its directory.
struct Slapd {
    child: Child,
    dir: tempfile::TempDir,
    flavor: Flavor,
    port: u16,
}

fn require_tool(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the Debian package {package} (apt-get install {package})"
    );
}

impl Slapd {
    fn start(flavor: Flavor) -> Slapd {
        for (tool, package) in [
            (SLAPD, "slapd"),
            (SLAPADD, "slapd"),
            (SLAPPASSWD, "slapd"),
            (LDAPMODIFY, "ldap-utils"),
            (LDAPSEARCH, "ldap-utils"),
        ] {
            require_tool(tool, package);
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-slapd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        std::fs::create_dir(d.join("db")).expect("db dir");
        let (suffix, schema) = match flavor {
            Flavor::OpenLdap => (OPENLDAP_SUFFIX, String::new()),
            Flavor::ActiveDirectory => {
                std::fs::write(d.join("ad.schema"), AD_SCHEMA).expect("write ad.schema");
                (AD_SUFFIX, format!("include {}\n", d.join("ad.schema").display()))
            }
        };
        // The service accounts get a size limit of 3 on plain searches, as
        // directories limit them (AD: 1000); paged searches get past it,
        // except the capped account's.
        let limits = match flavor {
            Flavor::OpenLdap => format!("limits dn.exact=\"cn=reader,{suffix}\" size=3 size.prtotal=unlimited\n"),
            Flavor::ActiveDirectory => format!(
                "limits dn.exact=\"{AD_SERVICE}\" size=3 size.prtotal=unlimited\n\
                 limits dn.exact=\"{AD_CAPPED_SERVICE}\" size=3 size.prtotal=3\n"
            ),
        };
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             {schema}\
             pidfile {dir}/slapd.pid\n\
             argsfile {dir}/slapd.args\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             database mdb\n\
             maxsize 10485760\n\
             suffix \"{suffix}\"\n\
             rootdn \"cn=admin,{suffix}\"\n\
             rootpw {ROOT_PASSWORD}\n\
             directory {dir}/db\n\
             {limits}\
             access to attrs=userPassword by anonymous auth by * none\n\
             access to * by users read by * none\n",
            dir = d.display(),
        );
        std::fs::write(d.join("slapd.conf"), conf).expect("write slapd.conf");
        let data = match flavor {
            Flavor::OpenLdap => openldap_data(),
            Flavor::ActiveDirectory => ad_data(),
        };
        std::fs::write(d.join("data.ldif"), data).expect("write data.ldif");
        run(Command::new(SLAPADD)
            .arg("-q")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("data.ldif")));
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let stderr = std::fs::File::create(d.join("slapd.log")).expect("slapd.log");
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/"))
            // A debug level keeps slapd in the foreground, our child.
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn slapd (Debian package slapd)");
        let mut slapd = Slapd {
            child,
            dir,
            flavor,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = slapd.child.try_wait() {
                panic!("slapd exited with {status}: {}", slapd.log());
            }
            assert!(Instant::now() < deadline, "slapd not listening: {}", slapd.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        slapd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Applies an LDIF change as the root DN with the real `ldapmodify`.
    fn modify(&self, ldif: &str) {
        let suffix = match self.flavor {
            Flavor::OpenLdap => OPENLDAP_SUFFIX,
            Flavor::ActiveDirectory => AD_SUFFIX,
        };
        let mut child = Command::new(LDAPMODIFY)
            .args(["-x", "-H", &self.url(), "-D", &format!("cn=admin,{suffix}")])
            .args(["-w", ROOT_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ldapmodify (Debian package ldap-utils)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write ldif");
        let out = child.wait_with_output().expect("ldapmodify");
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const AD_SCHEMA: &str = "\
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.102 NAME 'memberOf'
  EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )
objectclass ( 1.2.840.113556.1.5.9 NAME 'user' SUP inetOrgPerson STRUCTURAL
  MAY ( sAMAccountName $ memberOf ) )
objectclass ( 1.2.840.113556.1.5.8 NAME 'group' SUP top STRUCTURAL
  MUST cn MAY ( member $ sAMAccountName $ description ) )
";

fn ssha(password: &str) -> String {
    let out = Command::new(SLAPPASSWD)
        .args(["-h", "{SSHA}", "-s", password])
        .output()
        .expect("slappasswd (Debian package slapd)");
    assert!(out.status.success(), "slappasswd failed");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// alice and carol are developers, bob is an admin.
fn openldap_data() -> String {
    let s = OPENLDAP_SUFFIX;
    format!(
        "dn: {s}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: example\n\n\
         dn: cn=reader,{s}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: reader\nuserPassword: {svc}\n\n\
         dn: ou=people,{s}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{s}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: uid=alice,ou=people,{s}\nobjectClass: inetOrgPerson\nuid: alice\ncn: Alice Liddell\n\
         sn: Liddell\nmail: alice@example.org\nuserPassword: {alice}\n\n\
         dn: uid=bob,ou=people,{s}\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob Builder\n\
         sn: Builder\nuserPassword: {bob}\n\n\
         dn: uid=carol,ou=people,{s}\nobjectClass: inetOrgPerson\nuid: carol\ncn: Carol Coder\n\
         sn: Coder\nuserPassword: {carol}\n\n\
         dn: {DEVELOPERS}\nobjectClass: groupOfNames\ncn: developers\n\
         member: uid=alice,ou=people,{s}\nmember: uid=carol,ou=people,{s}\n\n\
         dn: cn=admins,ou=groups,{s}\nobjectClass: groupOfNames\ncn: admins\n\
         member: uid=bob,ou=people,{s}\n\n",
        svc = ssha(SERVICE_PASSWORD),
        alice = ssha(ALICE_PASSWORD),
        bob = ssha(BOB_PASSWORD),
        carol = ssha(CAROL_PASSWORD),
    )
}

/// alice is a developer; carol is only in Domain Users.
fn ad_data() -> String {
    let s = AD_SUFFIX;
    format!(
        "dn: {s}\nobjectClass: dcObject\nobjectClass: organization\ndc: corp\no: corp\n\n\
         dn: OU=Service Accounts,{s}\nobjectClass: organizationalUnit\nou: Service Accounts\n\n\
         dn: CN=svc-berth,OU=Service Accounts,{s}\nobjectClass: user\ncn: svc-berth\nsn: svc\n\
         sAMAccountName: svc-berth\nuserPassword: {svc}\n\n\
         dn: {AD_CAPPED_SERVICE}\nobjectClass: user\ncn: svc-capped\nsn: svc\n\
         sAMAccountName: svc-capped\nuserPassword: {svc}\n\n\
         dn: OU=Users,{s}\nobjectClass: organizationalUnit\nou: Users\n\n\
         dn: OU=Groups,{s}\nobjectClass: organizationalUnit\nou: Groups\n\n\
         dn: CN=Alice Admin,OU=Users,{s}\nobjectClass: user\ncn: Alice Admin\nsn: Admin\n\
         sAMAccountName: alice\ndisplayName: Alice Admin\nmail: alice@corp.example.com\n\
         userPassword: {alice}\nmemberOf: {AD_DEVELOPERS}\nmemberOf: {AD_DOMAIN_USERS}\n\n\
         dn: CN=Carol Coder,OU=Users,{s}\nobjectClass: user\ncn: Carol Coder\nsn: Coder\n\
         sAMAccountName: carol\ndisplayName: Carol Coder\nuserPassword: {carol}\n\
         memberOf: {AD_DOMAIN_USERS}\n\n\
         dn: {AD_DEVELOPERS}\nobjectClass: group\ncn: Developers\n\
         member: CN=Alice Admin,OU=Users,{s}\n\n\
         dn: {AD_DOMAIN_USERS}\nobjectClass: group\ncn: Domain Users\n\
         member: CN=Alice Admin,OU=Users,{s}\nmember: CN=Carol Coder,OU=Users,{s}\n\n",
        svc = ssha(SERVICE_PASSWORD),
        alice = ssha(ALICE_PASSWORD),
        carol = ssha(CAROL_PASSWORD),
    )
}

fn run(command: &mut Command) {
    let out = command.output().expect("spawn");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- the daemon over loopback TCP ---

enum Auth<'a> {
    Basic(&'a str, &'a str),
    Token(&'a str),
}

struct Server {
    daemon: Daemon,
    port: u16,
}

impl Server {
    fn start(sync_interval: &str) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let daemon =
            Daemon::start_with_args(&["--insecure-listen", &listen, "--directory-sync-interval", sync_interval]);
        wait_for("the TCP listener", || TcpStream::connect(("127.0.0.1", port)).is_ok());
        Self { daemon, port }
    }

    fn req(&self, method: &str, path: &str, auth: Auth) -> Resp {
        let auth = match auth {
            Auth::Basic(u, p) => format!("Authorization: Basic {}", base64(format!("{u}:{p}").as_bytes())),
            Auth::Token(t) => format!("Authorization: Bearer {t}"),
        };
        http(self.port, method, path, &[auth], b"")
    }

    /// A login as `berth` clients do it: HTTP Basic on `POST /v1/auth/token`.
    fn login(&self, user: &str, password: &str) -> Resp {
        self.req("POST", "/v1/auth/token", Auth::Basic(user, password))
    }

    fn token(&self, user: &str, password: &str) -> String {
        let r = self.login(user, password);
        assert_eq!(r.status, 201, "{user} logs in: {}", r.text());
        r.json()["token"].as_str().expect("token").to_string()
    }

    /// `berth` over the socket (the admin); stdout.
    fn admin(&self, args: &[&str]) -> String {
        self.daemon.ok(args)
    }

    fn admin_json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.admin(args)).expect("json")
    }

    /// `berth` over loopback TCP with `BERTH_TOKEN`.
    fn tcp_cli(&self, token: &str, args: &[&str]) -> std::process::Output {
        Command::new(common::bin())
            .arg("-H")
            .arg(format!("http://127.0.0.1:{}", self.port))
            .args(args)
            .env("BERTH_TOKEN", token)
            .stdin(Stdio::null())
            .output()
            .expect("berth")
    }

    fn audit(&self) -> Vec<Value> {
        self.admin_json(&["audit", "ls", "--format", "json"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The bind password in a root-only file under the daemon's temp dir.
    fn bind_password_file(&self) -> String {
        let path = self.daemon.dir.path().join("bind-password");
        std::fs::write(&path, format!("{SERVICE_PASSWORD}\n")).expect("write bind password");
        path.display().to_string()
    }

    /// Neither the daemon's log nor the exported audit log holds a password.
    fn assert_no_secret_leaked(&self) {
        let log = std::fs::read_to_string(self.daemon.dir.path().join("daemon.log")).expect("daemon log");
        let export = self.daemon.dir.path().join("audit.ndjson");
        self.admin(&["audit", "export", "-o", export.to_str().expect("utf-8")]);
        let exported = std::fs::read_to_string(&export).expect("export");
        assert!(exported.contains("directory"), "the export has the directory entries");
        for secret in SECRETS {
            assert!(!log.contains(secret), "a password is in the daemon log");
            assert!(!exported.contains(secret), "a password is in the audit log");
        }
    }
}

fn has_entry(entries: &[Value], user: &str, result: &str, action_part: &str, object_part: &str) -> bool {
    entries.iter().any(|e| {
        e["user"] == user
            && e["result"] == result
            && e["action"].as_str().unwrap_or_default().contains(action_part)
            && e["object"].as_str().unwrap_or_default().contains(object_part)
    })
}

fn user<'a>(users: &'a Value, name: &str) -> &'a Value {
    users
        .as_array()
        .and_then(|list| list.iter().find(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("no user {name} in {users}"))
}

#[test]
fn openldap_login_provisions_and_sync_takes_the_team_grant_away() {
    let slapd = Slapd::start(Flavor::OpenLdap);
    // Scheduled sync off: every sync here is the one the test asks for.
    let s = Server::start("0");
    let password_file = s.bind_password_file();
    let url = slapd.url();
    s.admin(&[
        "directory",
        "add",
        "openldap",
        "--url",
        &url,
        "--bind-dn",
        &format!("cn=reader,{OPENLDAP_SUFFIX}"),
        "--bind-password-file",
        &password_file,
        "--base-dn",
        &format!("ou=people,{OPENLDAP_SUFFIX}"),
        "--user-filter",
        "(&(objectClass=inetOrgPerson)(uid={username}))",
        "--group-base-dn",
        &format!("ou=groups,{OPENLDAP_SUFFIX}"),
    ]);
    let listed = s.admin(&["directory", "ls", "--format", "json"]);
    assert!(!listed.contains(SERVICE_PASSWORD), "{listed}");
    let listed: Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed[0]["bind_password"], "***", "{listed}");
    assert_eq!(listed[0]["username_attr"], "uid", "{listed}");
    let tested = s.admin(&["directory", "test", "openldap", "--user", "alice"]);
    assert!(
        tested.contains(&format!("uid=alice,ou=people,{OPENLDAP_SUFFIX}")),
        "{tested}"
    );
    assert!(tested.contains(DEVELOPERS), "{tested}");

    // The team follows the group "developers" (by name) and may view images.
    s.admin(&[
        "team",
        "create",
        "devs",
        "--directory",
        "openldap",
        "--group",
        "developers",
    ]);
    s.admin(&["grant", "create", "team:devs", "view-only"]);
    let synced = s.admin(&["directory", "sync"]);
    assert!(synced.contains("openldap: created users alice, carol"), "{synced}");
    assert!(synced.contains("openldap/devs: added alice, carol"), "{synced}");

    // alice logs in with her directory password and uses the team's grant.
    let alice = s.token("alice", ALICE_PASSWORD);
    let me = s.req("GET", "/v1/whoami", Auth::Token(&alice));
    assert_eq!(me.json()["name"], "alice", "{}", me.text());
    assert_eq!(s.req("GET", "/v1/images", Auth::Token(&alice)).status, 200);
    let images = s.tcp_cli(&alice, &["images"]);
    assert!(images.status.success(), "{}", String::from_utf8_lossy(&images.stderr));
    let users = s.admin_json(&["user", "ls", "--format", "json"]);
    assert_eq!(user(&users, "alice")["directory"], "openldap", "{users}");
    assert_eq!(
        user(&users, "alice")["dn"],
        format!("uid=alice,ou=people,{OPENLDAP_SUFFIX}").as_str()
    );
    assert!(user(&users, "admin")["directory"].is_null(), "{users}");

    // A wrong password: 401, audited like a local one.
    let refused = s.login("alice", WRONG_PASSWORD);
    assert_eq!(refused.status, 401, "{}", refused.text());
    let entries = s.audit();
    assert!(
        entries.iter().any(|e| e["user"] == "alice"
            && e["result"] == "failed"
            && e["status"] == 401
            && e["detail"] == "directory: wrong password"),
        "{entries:#?}"
    );

    // bob is provisioned at his first login, in no synced team: no grant.
    let bob = s.token("bob", BOB_PASSWORD);
    assert_eq!(s.req("GET", "/v1/images", Auth::Token(&bob)).status, 403);
    let users = s.admin_json(&["user", "ls", "--format", "json"]);
    assert_eq!(user(&users, "bob")["directory"], "openldap", "{users}");
    assert!(has_entry(
        &s.audit(),
        "bob",
        "allowed",
        "directory provision",
        "user:bob"
    ));

    // alice leaves the group; after a sync the same request is refused.
    slapd.modify(&format!(
        "dn: {DEVELOPERS}\nchangetype: modify\ndelete: member\n\
         member: uid=alice,ou=people,{OPENLDAP_SUFFIX}\n"
    ));
    let synced = s.admin(&["directory", "sync", "openldap"]);
    assert!(synced.contains("openldap/devs: removed alice"), "{synced}");
    let r = s.req("GET", "/v1/images", Auth::Token(&alice));
    assert_eq!(r.status, 403, "{}", r.text());
    let teams = s.admin_json(&["team", "ls", "--format", "json"]);
    assert_eq!(teams[0]["members"], serde_json::json!(["carol"]), "{teams}");
    assert_eq!(teams[0]["directory_group"]["group"], "developers", "{teams}");
    assert!(has_entry(
        &s.audit(),
        "admin",
        "allowed",
        "directory team remove",
        "team:devs/alice"
    ));

    // Failed directory logins lock the login out like local ones.
    for _ in 0..5 {
        assert_eq!(s.login("carol", WRONG_PASSWORD).status, 401);
    }
    assert_eq!(s.login("carol", CAROL_PASSWORD).status, 401, "locked out");
    assert!(s
        .audit()
        .iter()
        .any(|e| e["user"] == "carol" && e["detail"] == "user locked out after failed logins"));

    // A directory user's password is the directory's to change.
    let (_, err) = s.daemon.fails(&["user", "passwd", "alice"]);
    assert!(err.contains("directory openldap"), "{err}");

    // The human views; the bind test with the user's password from stdin.
    let table = s.admin(&["directory", "ls"]);
    assert!(
        table.contains("openldap") && table.contains(&url) && table.contains("ago"),
        "{table}"
    );
    let table = s.admin(&["team", "ls"]);
    assert!(table.contains("openldap: developers"), "{table}");
    let mut child = s
        .daemon
        .cmd(&["directory", "test", "openldap", "--user", "bob", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{BOB_PASSWORD}\n").as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("berth directory test");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("password:  accepted"), "{text}");

    // Unmapped, the team keeps its members and sync leaves it alone.
    s.admin(&["team", "update", "devs", "--no-directory"]);
    let teams = s.admin_json(&["team", "ls", "--format", "json"]);
    assert!(teams[0]["directory_group"].is_null(), "{teams}");
    assert!(s.admin(&["directory", "sync"]).contains("no team is synced"));
    s.admin(&[
        "team",
        "update",
        "devs",
        "--directory",
        "openldap",
        "--group",
        DEVELOPERS,
    ]);
    s.admin(&["directory", "rm", "openldap"]);
    let listed = s.admin_json(&["directory", "ls", "--format", "json"]);
    assert_eq!(listed, serde_json::json!([]));
    let teams = s.admin_json(&["team", "ls", "--format", "json"]);
    assert!(teams[0]["directory_group"].is_null(), "{teams}");
    assert_eq!(s.login("bob", BOB_PASSWORD).status, 401, "no directory, no login");
    s.assert_no_secret_leaked();
}

#[test]
fn active_directory_login_by_domain_and_scheduled_sync() {
    let slapd = Slapd::start(Flavor::ActiveDirectory);
    let s = Server::start("1s");
    let password_file = s.bind_password_file();
    let url = slapd.url();
    s.admin(&[
        "directory",
        "add",
        "corp-ad",
        "--url",
        &url,
        "--bind-dn",
        &format!("CN=svc-berth,OU=Service Accounts,{AD_SUFFIX}"),
        "--bind-password-file",
        &password_file,
        "--base-dn",
        &format!("OU=Users,{AD_SUFFIX}"),
        "--user-filter",
        "(&(objectClass=user)(sAMAccountName={username}))",
        "--full-name-attr",
        "displayName",
        "--team-sync",
        "member-of",
        "--domain",
        "CORP",
        "--domain",
        "corp.example.com",
    ]);
    let listed = s.admin_json(&["directory", "ls", "--format", "json"]);
    assert_eq!(listed[0]["username_attr"], "sAMAccountName", "{listed}");
    s.admin(&[
        "team",
        "create",
        "developers",
        "--directory",
        "corp-ad",
        "--group",
        AD_DEVELOPERS,
    ]);
    s.admin(&["grant", "create", "team:developers", "view-only"]);

    // DOMAIN\user and user@domain both reach the AD; the berth user is alice.
    let alice = s.token("CORP\\alice", ALICE_PASSWORD);
    let me = s.req("GET", "/v1/whoami", Auth::Token(&alice));
    assert_eq!(me.json()["name"], "alice", "{}", me.text());
    assert_eq!(s.req("GET", "/v1/images", Auth::Token(&alice)).status, 200);
    let carol = s.token("carol@corp.example.com", CAROL_PASSWORD);
    assert_eq!(s.req("GET", "/v1/images", Auth::Token(&carol)).status, 403);
    assert_eq!(s.login("CORP\\alice", WRONG_PASSWORD).status, 401);

    // The daemon's own schedule notices that alice left the group.
    slapd.modify(&format!(
        "dn: CN=Alice Admin,OU=Users,{AD_SUFFIX}\nchangetype: modify\ndelete: memberOf\n\
         memberOf: {AD_DEVELOPERS}\n"
    ));
    wait_for("the scheduled sync to take alice's grant away", || {
        s.req("GET", "/v1/images", Auth::Token(&alice)).status == 403
    });
    assert!(
        has_entry(
            &s.audit(),
            "directory-sync",
            "allowed",
            "directory team remove",
            "team:developers/alice"
        ),
        "{:#?}",
        s.audit()
    );
    let listed = s.admin_json(&["directory", "ls", "--format", "json"]);
    assert_eq!(listed[0]["last_sync"]["ok"], true, "{listed}");
    s.assert_no_secret_leaked();
}

/// A user the directory no longer has is cut off by the next sync: their
/// token and session stop working at once, their client bundle is revoked,
/// and it is audited; an unreachable directory disables nobody; once the
/// directory has them again, they log in as before.
#[test]
fn a_user_gone_from_the_directory_loses_tokens_sessions_and_bundles() {
    let slapd = Slapd::start(Flavor::OpenLdap);
    let s = Server::start("0");
    let password_file = s.bind_password_file();
    s.admin(&[
        "directory",
        "add",
        "openldap",
        "--url",
        &slapd.url(),
        "--bind-dn",
        &format!("cn=reader,{OPENLDAP_SUFFIX}"),
        "--bind-password-file",
        &password_file,
        "--base-dn",
        &format!("ou=people,{OPENLDAP_SUFFIX}"),
        "--user-filter",
        "(&(objectClass=inetOrgPerson)(uid={username}))",
    ]);
    // bob logs in: a token, a web session and a client bundle.
    let token = s.token("bob", BOB_PASSWORD);
    let basic = format!(
        "Authorization: Basic {}",
        base64(format!("bob:{BOB_PASSWORD}").as_bytes())
    );
    let session = http(s.port, "POST", "/v1/auth/session", std::slice::from_ref(&basic), b"");
    assert_eq!(session.status, 201, "{}", session.text());
    let cookie = session
        .head
        .lines()
        .find_map(|l| l.split_once("berth_session="))
        .and_then(|(_, rest)| rest.split(';').next())
        .map(|v| format!("Cookie: berth_session={v}"))
        .expect("a session cookie");
    let bundle = s.req("POST", "/v1/bundles", Auth::Token(&token));
    assert_eq!(bundle.status, 200, "{}", bundle.text());
    let bundle_id = bundle.json()["bundle"]["id"].as_str().expect("bundle id").to_string();
    assert_eq!(s.req("GET", "/v1/whoami", Auth::Token(&token)).status, 200);
    assert_eq!(
        http(s.port, "GET", "/v1/whoami", std::slice::from_ref(&cookie), b"").status,
        200
    );
    let unchanged = s.admin(&["directory", "sync", "openldap"]);
    assert!(!unchanged.contains("disabled user"), "{unchanged}");

    // An unreachable directory is no reason to cut anyone off.
    let stopped = Slapd::start(Flavor::OpenLdap);
    let dead_url = stopped.url();
    drop(stopped);
    s.admin(&[
        "directory",
        "add",
        "openldap",
        "--url",
        &dead_url,
        "--bind-dn",
        &format!("cn=reader,{OPENLDAP_SUFFIX}"),
        "--bind-password-file",
        &password_file,
        "--base-dn",
        &format!("ou=people,{OPENLDAP_SUFFIX}"),
        "--user-filter",
        "(&(objectClass=inetOrgPerson)(uid={username}))",
    ]);
    let (code, out) = s.daemon.fails(&["directory", "sync", "openldap"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(s.req("GET", "/v1/whoami", Auth::Token(&token)).status, 200);

    // bob leaves the directory: the next sync cuts him off.
    s.admin(&[
        "directory",
        "add",
        "openldap",
        "--url",
        &slapd.url(),
        "--bind-dn",
        &format!("cn=reader,{OPENLDAP_SUFFIX}"),
        "--bind-password-file",
        &password_file,
        "--base-dn",
        &format!("ou=people,{OPENLDAP_SUFFIX}"),
        "--user-filter",
        "(&(objectClass=inetOrgPerson)(uid={username}))",
    ]);
    slapd.modify(&format!(
        "dn: uid=bob,ou=people,{OPENLDAP_SUFFIX}\nchangetype: delete\n"
    ));
    let synced = s.admin(&["directory", "sync", "openldap"]);
    assert!(
        synced.contains(
            "openldap: disabled user bob (no longer in directory openldap): 1 token(s), 1 session(s) and 1 client bundle(s) revoked"
        ),
        "{synced}"
    );
    let r = s.req("GET", "/v1/whoami", Auth::Token(&token));
    assert_eq!(r.status, 401, "the token still works: {}", r.text());
    let r = http(s.port, "GET", "/v1/whoami", std::slice::from_ref(&cookie), b"");
    assert_eq!(r.status, 401, "the session still works: {}", r.text());
    let bundles = s.admin_json(&["bundle", "ls", "--format", "json"]);
    let revoked = bundles
        .as_array()
        .expect("bundles")
        .iter()
        .find(|b| b["id"] == bundle_id.as_str())
        .expect("bob's bundle");
    assert!(revoked["revoked"].is_string(), "{bundles}");
    assert_eq!(s.login("bob", BOB_PASSWORD).status, 401);
    assert!(has_entry(
        &s.audit(),
        "admin",
        "allowed",
        "directory user disable",
        "user:bob"
    ));
    let again = s.admin(&["directory", "sync", "openldap"]);
    assert!(!again.contains("disabled user"), "reported twice: {again}");

    // Back in the directory: he logs in again, and a sync says so.
    slapd.modify(&format!(
        "dn: uid=bob,ou=people,{OPENLDAP_SUFFIX}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: bob\n\
         cn: Bob Builder\nsn: Builder\nuserPassword: {}\n",
        ssha(BOB_PASSWORD)
    ));
    let synced = s.admin(&["directory", "sync", "openldap"]);
    assert!(synced.contains("openldap: restored users bob"), "{synced}");
    let token = s.token("bob", BOB_PASSWORD);
    assert_eq!(s.req("GET", "/v1/whoami", Auth::Token(&token)).status, 200);
}

/// `berth directory add` for the AD-like server, searching as `bind_dn`.
fn add_ad_directory(s: &Server, url: &str, bind_dn: &str, password_file: &str) {
    s.admin(&[
        "directory",
        "add",
        "corp-ad",
        "--url",
        url,
        "--bind-dn",
        bind_dn,
        "--bind-password-file",
        password_file,
        "--base-dn",
        &format!("OU=Users,{AD_SUFFIX}"),
        "--user-filter",
        "(&(objectClass=user)(sAMAccountName={username}))",
        "--team-sync",
        "member-of",
        "--domain",
        "CORP",
    ]);
}

/// A group of six under a size limit of three: the paged read adds all
/// six. A read the server cuts at three (its paged-results total is capped
/// too) changes nothing in the team, and the sync says why; read whole
/// again, the member who left is removed.
#[test]
fn a_group_larger_than_the_size_limit_is_paged_and_a_cut_read_changes_nothing() {
    let slapd = Slapd::start(Flavor::ActiveDirectory);
    let names: Vec<String> = (1..=6).map(|i| format!("member{i}")).collect();
    let mut ldif = format!("dn: {AD_BIG_TEAM}\nchangetype: add\nobjectClass: group\ncn: Big Team\n");
    for name in &names {
        ldif.push_str(&format!("member: CN={name},OU=Users,{AD_SUFFIX}\n"));
    }
    for name in &names {
        ldif.push_str(&format!(
            "\ndn: CN={name},OU=Users,{AD_SUFFIX}\nchangetype: add\nobjectClass: user\ncn: {name}\nsn: {name}\n\
             sAMAccountName: {name}\nmemberOf: {AD_BIG_TEAM}\n"
        ));
    }
    slapd.modify(&ldif);
    // The limit holds: a plain search as the service account stops at 3
    // (ldapsearch exits with the result code, 4: size limit exceeded).
    let plain = Command::new(LDAPSEARCH)
        .args(["-x", "-H", &slapd.url(), "-D", AD_SERVICE, "-w", SERVICE_PASSWORD])
        .args([
            "-b",
            &format!("OU=Users,{AD_SUFFIX}"),
            &format!("(memberOf={AD_BIG_TEAM})"),
            "1.1",
        ])
        .output()
        .expect("ldapsearch");
    assert_eq!(
        plain.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&plain.stdout)
    );

    let s = Server::start("0");
    let password_file = s.bind_password_file();
    add_ad_directory(&s, &slapd.url(), AD_SERVICE, &password_file);
    s.admin(&[
        "team",
        "create",
        "big",
        "--directory",
        "corp-ad",
        "--group",
        AD_BIG_TEAM,
    ]);
    let synced = s.admin(&["directory", "sync", "corp-ad"]);
    assert!(
        synced.contains(&format!("corp-ad/big: added {}", names.join(", "))),
        "{synced}"
    );
    let members = |s: &Server| {
        let teams = s.admin_json(&["team", "ls", "--format", "json"]);
        let team = teams
            .as_array()
            .and_then(|list| list.iter().find(|t| t["name"] == "big"))
            .unwrap_or_else(|| panic!("no team big in {teams}"))
            .clone();
        team["members"].clone()
    };
    assert_eq!(members(&s), serde_json::json!(names), "all six");

    // member6 leaves; the capped account's read stops at three of five.
    slapd.modify(&format!(
        "dn: CN=member6,OU=Users,{AD_SUFFIX}\nchangetype: modify\ndelete: memberOf\nmemberOf: {AD_BIG_TEAM}\n"
    ));
    add_ad_directory(&s, &slapd.url(), AD_CAPPED_SERVICE, &password_file);
    let out = s.daemon.berth(&["directory", "sync", "corp-ad"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "corp-ad/big: not synced: directory corp-ad: the search under \"OU=Users,{AD_SUFFIX}\" \
             could not be read completely: size limit exceeded"
        )),
        "{stdout}"
    );
    assert_eq!(members(&s), serde_json::json!(names), "the cut read removed members");
    let listed = s.admin_json(&["directory", "ls", "--format", "json"]);
    assert_eq!(listed[0]["last_sync"]["ok"], false, "{listed}");
    let entries = s.audit();
    assert!(
        entries.iter().any(|e| e["action"] == "directory sync"
            && e["object"] == "team:big"
            && e["result"] == "failed"
            && e["detail"].as_str().unwrap_or_default().contains("size limit exceeded")),
        "{entries:#?}"
    );
    assert!(!has_entry(
        &entries,
        "admin",
        "allowed",
        "directory team remove",
        "team:big/"
    ));

    // Read whole again: member6 is removed, nobody else.
    add_ad_directory(&s, &slapd.url(), AD_SERVICE, &password_file);
    let synced = s.admin(&["directory", "sync", "corp-ad"]);
    assert!(synced.contains("corp-ad/big: removed member6"), "{synced}");
    assert_eq!(members(&s), serde_json::json!(names[..5]));
    s.assert_no_secret_leaked();
}

/// A team mapped to a group whose member is another group gets that
/// group's users; a login keeps them (the user's groups include the outer
/// one); when the inner group leaves the outer one, its users leave the team.
#[test]
fn openldap_nested_groups_give_their_users_the_team() {
    let slapd = Slapd::start(Flavor::OpenLdap);
    let platform = format!("cn=platform,ou=groups,{OPENLDAP_SUFFIX}");
    slapd.modify(&format!(
        "dn: {platform}\nchangetype: add\nobjectClass: groupOfNames\ncn: platform\n\
         member: {DEVELOPERS}\nmember: uid=bob,ou=people,{OPENLDAP_SUFFIX}\n"
    ));
    let s = Server::start("0");
    let password_file = s.bind_password_file();
    s.admin(&[
        "directory",
        "add",
        "openldap",
        "--url",
        &slapd.url(),
        "--bind-dn",
        &format!("cn=reader,{OPENLDAP_SUFFIX}"),
        "--bind-password-file",
        &password_file,
        "--base-dn",
        &format!("ou=people,{OPENLDAP_SUFFIX}"),
        "--user-filter",
        "(&(objectClass=inetOrgPerson)(uid={username}))",
        "--group-base-dn",
        &format!("ou=groups,{OPENLDAP_SUFFIX}"),
    ]);
    s.admin(&[
        "team",
        "create",
        "platform",
        "--directory",
        "openldap",
        "--group",
        "platform",
    ]);
    s.admin(&["grant", "create", "team:platform", "view-only"]);
    let synced = s.admin(&["directory", "sync", "openldap"]);
    assert!(
        synced.contains("openldap/platform: added alice, bob, carol"),
        "{synced}"
    );

    // alice is in platform through developers: her login keeps the grant.
    let tested = s.admin(&["directory", "test", "openldap", "--user", "alice"]);
    assert!(tested.contains(&platform) && tested.contains(DEVELOPERS), "{tested}");
    let alice = s.token("alice", ALICE_PASSWORD);
    assert_eq!(s.req("GET", "/v1/images", Auth::Token(&alice)).status, 200);
    let teams = s.admin_json(&["team", "ls", "--format", "json"]);
    assert_eq!(
        teams[0]["members"],
        serde_json::json!(["alice", "bob", "carol"]),
        "{teams}"
    );

    // developers leaves platform: alice and carol leave the team, bob stays.
    slapd.modify(&format!(
        "dn: {platform}\nchangetype: modify\ndelete: member\nmember: {DEVELOPERS}\n"
    ));
    let synced = s.admin(&["directory", "sync", "openldap"]);
    assert!(synced.contains("openldap/platform: removed alice, carol"), "{synced}");
    let r = s.req("GET", "/v1/images", Auth::Token(&alice));
    assert_eq!(r.status, 403, "{}", r.text());
    let teams = s.admin_json(&["team", "ls", "--format", "json"]);
    assert_eq!(teams[0]["members"], serde_json::json!(["bob"]), "{teams}");
}
