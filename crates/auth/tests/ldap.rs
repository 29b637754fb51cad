//! The directory client against real `slapd` servers started by each test:
//! an OpenLDAP-style directory (`inetOrgPerson` users, `groupOfNames` and
//! `posixGroup` groups) and an AD-like one (a small schema with
//! `sAMAccountName`, `memberOf`, `user` and `group`). Each server gets a temp
//! dir and free loopback ports; dropping the guard stops it and removes the
//! dir, also when a test fails.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_auth::ldap::{
    authenticate, group_member_entries, group_members, in_group, sync_plan, DirectoryConfig, DirectoryUser, LdapError,
    TeamSync,
};

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const SLAPPASSWD: &str = "/usr/sbin/slappasswd";
const LDAPMODIFY: &str = "/usr/bin/ldapmodify";
const LDAPSEARCH: &str = "/usr/bin/ldapsearch";

const ROOT_PASSWORD: &str = "root-Zq81-secret";
const SERVICE_PASSWORD: &str = "svc-Hk27-secret";
const ALICE_PASSWORD: &str = "alice-Wp93-secret";
const BOB_PASSWORD: &str = "bob-Tn45-secret";
const STAR_PASSWORD: &str = "star-Jc66-secret";
const AD_ALICE_PASSWORD: &str = "adalice-Rv18-secret";
const CAROL_PASSWORD: &str = "carol-Lm52-secret";
const SECRETS: &[&str] = &[
    ROOT_PASSWORD,
    SERVICE_PASSWORD,
    ALICE_PASSWORD,
    BOB_PASSWORD,
    STAR_PASSWORD,
    AD_ALICE_PASSWORD,
    CAROL_PASSWORD,
];

/// A uid made of filter metacharacters; it must match only itself.
const STAR_UID: &str = "star*(paren)";

const OPENLDAP_SUFFIX: &str = "dc=example,dc=org";
const AD_SUFFIX: &str = "dc=corp,dc=example,dc=com";
const DEVELOPERS: &str = "cn=developers,ou=groups,dc=example,dc=org";
/// A service account whose paged searches stop at 3 entries.
const CAPPED_DN: &str = "cn=capped,dc=example,dc=org";
const AD_DEVELOPERS: &str = "CN=Developers,OU=Groups,DC=corp,DC=example,DC=com";
const AD_DOMAIN_USERS: &str = "CN=Domain Users,OU=Groups,DC=corp,DC=example,DC=com";

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    OpenLdap,
    ActiveDirectory,
}

/// A running `slapd`; dropping it kills the process and removes its dir.
struct Slapd {
    child: Child,
    dir: tempfile::TempDir,
    flavor: Flavor,
    ldap_port: u16,
    ldaps_port: Option<u16>,
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name).display().to_string();
        run(Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &path("ca.key"),
            "-out",
            &path("ca.pem"),
        ]));
        run(Command::new("openssl").args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &path("server.key"),
            "-out",
            &path("server.csr"),
        ]));
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        run(Command::new("openssl").args([
            "x509",
            "-req",
            "-in",
            &path("server.csr"),
            "-CA",
            &path("ca.pem"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &path("server.ext"),
            "-out",
            &path("server.pem"),
        ]));
        TestCa { dir }
    }

    fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca.pem")).expect("read ca.pem")
    }
}

impl Slapd {
    fn start(flavor: Flavor, tls: Option<&TestCa>) -> Slapd {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::create_dir(d.join("db")).expect("db dir");
        let (suffix, schema) = match flavor {
            Flavor::OpenLdap => (OPENLDAP_SUFFIX, String::new()),
            Flavor::ActiveDirectory => {
                std::fs::write(d.join("ad.schema"), AD_SCHEMA).expect("write ad.schema");
                (AD_SUFFIX, format!("include {}\n", d.join("ad.schema").display()))
            }
        };
        let tls_conf = match tls {
            Some(ca) => format!(
                "TLSCACertificateFile {0}/ca.pem\nTLSCertificateFile {0}/server.pem\n\
                 TLSCertificateKeyFile {0}/server.key\n",
                ca.dir.path().display()
            ),
            None => String::new(),
        };
        // The service accounts get a size limit of 3 on plain searches,
        // as directories limit them (AD: 1000); paged searches get past it,
        // except the capped account's, which stop at 3 entries too.
        let limits = match flavor {
            Flavor::OpenLdap => format!(
                "limits dn.exact=\"cn=reader,{suffix}\" size=3 size.prtotal=unlimited\n\
                 limits dn.exact=\"{CAPPED_DN}\" size=3 size.prtotal=3\n"
            ),
            Flavor::ActiveDirectory => String::new(),
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
             {tls_conf}\
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

        let (ldap_port, ldaps_port) = if tls.is_some() {
            let [a, b] = free_ports::<2>();
            (a, Some(b))
        } else {
            (free_ports::<1>()[0], None)
        };
        let mut urls = format!("ldap://127.0.0.1:{ldap_port}/");
        if let Some(port) = ldaps_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{port}/"));
        }
        let stderr = std::fs::File::create(d.join("slapd.log")).expect("slapd.log");
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(&urls)
            // A debug level keeps slapd in the foreground, our child.
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn slapd (is the slapd package installed?)");
        let mut slapd = Slapd {
            child,
            dir,
            flavor,
            ldap_port,
            ldaps_port,
        };
        slapd.wait_ready(ldap_port);
        if let Some(port) = ldaps_port {
            slapd.wait_ready(port);
        }
        slapd
    }

    fn wait_ready(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("slapd exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "slapd not listening on {port}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
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
            .expect("spawn ldapmodify");
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

    /// OpenLDAP style: `uid` users, `groupOfNames` and `posixGroup` groups.
    fn openldap_config(&self) -> DirectoryConfig {
        DirectoryConfig {
            name: "openldap".to_owned(),
            url: self.url(),
            start_tls: false,
            ca_pem: None,
            bind_dn: format!("cn=reader,{OPENLDAP_SUFFIX}"),
            bind_password: SERVICE_PASSWORD.to_owned(),
            user_base_dn: format!("ou=people,{OPENLDAP_SUFFIX}"),
            user_filter: "(&(objectClass=inetOrgPerson)(uid={username}))".to_owned(),
            username_attr: "uid".to_owned(),
            email_attr: "mail".to_owned(),
            full_name_attr: "cn".to_owned(),
            team_sync: TeamSync::MemberAttr {
                group_base_dn: format!("ou=groups,{OPENLDAP_SUFFIX}"),
                group_filter: "(objectClass=groupOfNames)".to_owned(),
                member_attr: "member".to_owned(),
            },
            // The default server: bare logins and unlisted domains.
            domains: Vec::new(),
        }
    }

    /// AD style: `sAMAccountName` logins, groups from the user's `memberOf`.
    fn ad_config(&self) -> DirectoryConfig {
        DirectoryConfig {
            name: "corp-ad".to_owned(),
            url: self.url(),
            start_tls: false,
            ca_pem: None,
            bind_dn: format!("CN=svc-berth,OU=Service Accounts,{AD_SUFFIX}"),
            bind_password: SERVICE_PASSWORD.to_owned(),
            user_base_dn: format!("OU=Users,{AD_SUFFIX}"),
            user_filter: "(&(objectClass=user)(sAMAccountName={username}))".to_owned(),
            username_attr: "sAMAccountName".to_owned(),
            email_attr: "mail".to_owned(),
            full_name_attr: "displayName".to_owned(),
            team_sync: TeamSync::UserMemberOf {
                attr: "memberOf".to_owned(),
            },
            domains: vec!["CORP".to_owned(), "corp.example.com".to_owned()],
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // Our own child, by its handle; the TempDir field is removed after.
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
        .expect("slappasswd");
    assert!(out.status.success(), "slappasswd failed");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

fn openldap_data() -> String {
    let s = OPENLDAP_SUFFIX;
    format!(
        "dn: {s}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: example\n\n\
         dn: cn=reader,{s}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: reader\nuserPassword: {svc}\n\n\
         dn: {CAPPED_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: capped\nuserPassword: {svc}\n\n\
         dn: ou=people,{s}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{s}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: uid=alice,ou=people,{s}\nobjectClass: inetOrgPerson\nuid: alice\ncn: Alice Liddell\n\
         sn: Liddell\nmail: alice@example.org\nuserPassword: {alice}\n\n\
         dn: uid=bob,ou=people,{s}\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob Builder\n\
         sn: Builder\nuserPassword: {BOB_PASSWORD}\n\n\
         dn: cn=Star User,ou=people,{s}\nobjectClass: inetOrgPerson\nuid: {STAR_UID}\n\
         cn: Star User\nsn: User\nuserPassword: {STAR_PASSWORD}\n\n\
         dn: cn=Twin One,ou=people,{s}\nobjectClass: inetOrgPerson\nuid: twin\ncn: Twin One\n\
         sn: One\nuserPassword: {BOB_PASSWORD}\n\n\
         dn: cn=Twin Two,ou=people,{s}\nobjectClass: inetOrgPerson\nuid: twin\ncn: Twin Two\n\
         sn: Two\nuserPassword: {BOB_PASSWORD}\n\n\
         dn: {DEVELOPERS}\nobjectClass: groupOfNames\ncn: developers\n\
         member: uid=alice,ou=people,{s}\nmember: cn=Star User,ou=people,{s}\n\
         member: uid=deleted,ou=people,{s}\n\n\
         dn: cn=admins,ou=groups,{s}\nobjectClass: groupOfNames\ncn: admins\n\
         member: uid=bob,ou=people,{s}\n\n\
         dn: cn=ops,ou=groups,{s}\nobjectClass: posixGroup\ncn: ops\ngidNumber: 5000\n\
         memberUid: alice\nmemberUid: bob\n\n",
        svc = ssha(SERVICE_PASSWORD),
        alice = ssha(ALICE_PASSWORD),
    )
}

fn ad_data() -> String {
    let s = AD_SUFFIX;
    format!(
        "dn: {s}\nobjectClass: dcObject\nobjectClass: organization\ndc: corp\no: corp\n\n\
         dn: OU=Service Accounts,{s}\nobjectClass: organizationalUnit\nou: Service Accounts\n\n\
         dn: CN=svc-berth,OU=Service Accounts,{s}\nobjectClass: user\ncn: svc-berth\nsn: svc\n\
         sAMAccountName: svc-berth\nuserPassword: {SERVICE_PASSWORD}\n\n\
         dn: OU=Users,{s}\nobjectClass: organizationalUnit\nou: Users\n\n\
         dn: OU=Groups,{s}\nobjectClass: organizationalUnit\nou: Groups\n\n\
         dn: CN=Alice Admin,OU=Users,{s}\nobjectClass: user\ncn: Alice Admin\nsn: Admin\n\
         sAMAccountName: alice\ndisplayName: Alice Admin\nmail: alice@corp.example.com\n\
         userPassword: {AD_ALICE_PASSWORD}\nmemberOf: {AD_DEVELOPERS}\nmemberOf: {AD_DOMAIN_USERS}\n\n\
         dn: CN=Carol Coder,OU=Users,{s}\nobjectClass: user\ncn: Carol Coder\nsn: Coder\n\
         sAMAccountName: carol\ndisplayName: Carol Coder\nuserPassword: {CAROL_PASSWORD}\n\
         memberOf: {AD_DOMAIN_USERS}\n\n\
         dn: {AD_DEVELOPERS}\nobjectClass: group\ncn: Developers\n\
         member: CN=Alice Admin,OU=Users,{s}\n\n\
         dn: {AD_DOMAIN_USERS}\nobjectClass: group\ncn: Domain Users\n\
         member: CN=Alice Admin,OU=Users,{s}\nmember: CN=Carol Coder,OU=Users,{s}\n\n"
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

/// Distinct free loopback ports, all bound at once so they differ.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("addr").port())
}

/// An error that also proves no test secret leaked into its text.
fn expect_err(result: Result<DirectoryUser, LdapError>) -> LdapError {
    let err = result.expect_err("expected an error");
    let text = format!("{err} {err:?}");
    for secret in SECRETS {
        assert!(!text.contains(secret), "secret in error: {text}");
    }
    err
}

fn s(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn openldap_login_returns_user_and_groups() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let cfg = slapd.openldap_config();
    let user = authenticate(&[cfg], "alice", ALICE_PASSWORD).expect("alice logs in");
    assert_eq!(
        user,
        DirectoryUser {
            directory: "openldap".to_owned(),
            dn: format!("uid=alice,ou=people,{OPENLDAP_SUFFIX}"),
            username: "alice".to_owned(),
            email: Some("alice@example.org".to_owned()),
            full_name: Some("Alice Liddell".to_owned()),
            groups: vec![DEVELOPERS.to_owned()],
        }
    );
    assert!(!format!("{user:?}").contains(ALICE_PASSWORD));
}

#[test]
fn openldap_wrong_unknown_ambiguous_and_empty_are_distinct_refusals() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let cfgs = [slapd.openldap_config()];
    let wrong = expect_err(authenticate(&cfgs, "alice", BOB_PASSWORD));
    assert!(matches!(wrong, LdapError::WrongPassword { .. }), "{wrong:?}");
    let unknown = expect_err(authenticate(&cfgs, "mallory", ALICE_PASSWORD));
    assert!(matches!(unknown, LdapError::UnknownUser { .. }), "{unknown:?}");
    // Two entries share uid=twin: neither may be picked.
    let twin = expect_err(authenticate(&cfgs, "twin", BOB_PASSWORD));
    assert!(matches!(twin, LdapError::AmbiguousUser { .. }), "{twin:?}");
    // The anonymous-bind trap: an empty password must never pass.
    let empty = expect_err(authenticate(&cfgs, "alice", ""));
    assert!(matches!(empty, LdapError::EmptyCredentials { .. }), "{empty:?}");
    // Bob's cleartext userPassword works as well as Alice's {SSHA} one.
    let bob = authenticate(&cfgs, "bob", BOB_PASSWORD).expect("bob logs in");
    assert_eq!(bob.groups, s(&[&format!("cn=admins,ou=groups,{OPENLDAP_SUFFIX}")]));
    assert_eq!(bob.email, None);
}

#[test]
fn filter_metacharacters_in_login_cannot_inject() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let cfgs = [slapd.openldap_config()];
    // Unescaped, each of these would match alice (or everyone).
    for login in ["*", "al*", "alice)(uid=*", "*)(objectClass=*", "alice\\2a"] {
        let err = expect_err(authenticate(&cfgs, login, ALICE_PASSWORD));
        assert!(matches!(err, LdapError::UnknownUser { .. }), "{login:?}: {err:?}");
    }
    // A uid made of metacharacters matches exactly itself.
    let star = authenticate(&cfgs, STAR_UID, STAR_PASSWORD).expect("star logs in");
    assert_eq!(star.username, STAR_UID);
    assert_eq!(star.dn, format!("cn=Star User,ou=people,{OPENLDAP_SUFFIX}"));
    let err = expect_err(authenticate(&cfgs, STAR_UID, ALICE_PASSWORD));
    assert!(matches!(err, LdapError::WrongPassword { .. }), "{err:?}");
}

#[test]
fn openldap_removed_member_is_planned_for_removal() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let cfg = slapd.openldap_config();
    // The dangling member uid=deleted is skipped.
    let before = group_members(&cfg, DEVELOPERS).expect("members");
    assert_eq!(before, s(&["alice", STAR_UID]));
    assert_eq!(sync_plan(&s(&["bob"]), &before), (before.clone(), s(&["bob"])));

    slapd.modify(&format!(
        "dn: {DEVELOPERS}\nchangetype: modify\ndelete: member\n\
         member: uid=alice,ou=people,{OPENLDAP_SUFFIX}\n"
    ));
    let after = group_members(&cfg, DEVELOPERS).expect("members");
    assert_eq!(after, s(&[STAR_UID]));
    assert_eq!(sync_plan(&before, &after), (s(&[]), s(&["alice"])));
    let alice = authenticate(std::slice::from_ref(&cfg), "alice", ALICE_PASSWORD).expect("login");
    assert_eq!(alice.groups, s(&[]));
}

#[test]
fn openldap_member_uid_and_filter_team_sync() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let mut cfg = slapd.openldap_config();
    // Team sync by search filter: users under the user base.
    let with_mail = group_members(&cfg, "(mail=*@example.org)").expect("filter");
    assert_eq!(with_mail, s(&["alice"]));
    cfg.team_sync = TeamSync::MemberAttr {
        group_base_dn: format!("ou=groups,{OPENLDAP_SUFFIX}"),
        group_filter: "(objectClass=posixGroup)".to_owned(),
        member_attr: "memberUid".to_owned(),
    };
    let ops = format!("cn=ops,ou=groups,{OPENLDAP_SUFFIX}");
    assert_eq!(group_members(&cfg, &ops).expect("ops"), s(&["alice", "bob"]));
    // Team sync needs the entries: memberUid values are looked up, by
    // group DN and by group name.
    for group in [ops.as_str(), "ops"] {
        let entries = group_member_entries(&cfg, group).expect("ops entries");
        let found: Vec<(String, String)> = entries.into_iter().map(|m| (m.username, m.dn)).collect();
        assert_eq!(
            found,
            vec![
                ("alice".to_owned(), format!("uid=alice,ou=people,{OPENLDAP_SUFFIX}")),
                ("bob".to_owned(), format!("uid=bob,ou=people,{OPENLDAP_SUFFIX}")),
            ],
            "{group}"
        );
    }
    let bob = authenticate(std::slice::from_ref(&cfg), "bob", BOB_PASSWORD).expect("login");
    assert_eq!(bob.groups, s(&[&ops]));
    let missing = group_members(&cfg, &format!("cn=nope,ou=groups,{OPENLDAP_SUFFIX}"));
    assert!(matches!(missing, Err(LdapError::NoSuchEntry { .. })), "{missing:?}");
}

#[test]
fn ad_login_by_samaccountname_with_memberof_groups() {
    let slapd = Slapd::start(Flavor::ActiveDirectory, None);
    let cfgs = [slapd.ad_config()];
    for login in ["CORP\\alice", "alice@corp.example.com", "corp\\ALICE"] {
        let user = authenticate(&cfgs, login, AD_ALICE_PASSWORD).expect(login);
        assert_eq!(
            user,
            DirectoryUser {
                directory: "corp-ad".to_owned(),
                // slapd answers with the attribute names' schema spelling.
                dn: format!("cn=Alice Admin,ou=Users,{AD_SUFFIX}"),
                username: "alice".to_owned(),
                email: Some("alice@corp.example.com".to_owned()),
                full_name: Some("Alice Admin".to_owned()),
                groups: s(&[AD_DEVELOPERS, AD_DOMAIN_USERS]),
            },
            "{login}"
        );
    }
    let err = expect_err(authenticate(&cfgs, "CORP\\alice", CAROL_PASSWORD));
    assert!(matches!(err, LdapError::WrongPassword { .. }), "{err:?}");
    let err = expect_err(authenticate(&cfgs, "CORP\\*", AD_ALICE_PASSWORD));
    assert!(matches!(err, LdapError::UnknownUser { .. }), "{err:?}");
}

#[test]
fn ad_removed_memberof_is_planned_for_removal() {
    let slapd = Slapd::start(Flavor::ActiveDirectory, None);
    let cfg = slapd.ad_config();
    let developers = group_members(&cfg, AD_DEVELOPERS).expect("developers");
    assert_eq!(developers, s(&["alice"]));
    let everyone = group_members(&cfg, &format!("(memberOf={AD_DOMAIN_USERS})")).expect("filter");
    assert_eq!(everyone, s(&["alice", "carol"]));

    slapd.modify(&format!(
        "dn: CN=Alice Admin,OU=Users,{AD_SUFFIX}\nchangetype: modify\ndelete: memberOf\n\
         memberOf: {AD_DEVELOPERS}\n"
    ));
    let after = group_members(&cfg, AD_DEVELOPERS).expect("developers");
    assert_eq!(after, s(&[]));
    assert_eq!(sync_plan(&developers, &after), (s(&[]), s(&["alice"])));
    let alice = authenticate(&[cfg], "CORP\\alice", AD_ALICE_PASSWORD).expect("login");
    assert_eq!(alice.groups, s(&[AD_DOMAIN_USERS]));
}

#[test]
fn two_directories_chosen_by_domain() {
    let openldap = Slapd::start(Flavor::OpenLdap, None);
    let ad = Slapd::start(Flavor::ActiveDirectory, None);
    let mut ldap_cfg = openldap.openldap_config();
    ldap_cfg.domains = vec!["example.org".to_owned()];
    let mut cfgs = vec![ldap_cfg, ad.ad_config()];
    let ldap_alice = authenticate(&cfgs, "alice@example.org", ALICE_PASSWORD).expect("openldap");
    assert_eq!(ldap_alice.directory, "openldap");
    assert_eq!(ldap_alice.dn, format!("uid=alice,ou=people,{OPENLDAP_SUFFIX}"));
    let ad_alice = authenticate(&cfgs, "CORP\\alice", AD_ALICE_PASSWORD).expect("ad");
    assert_eq!(ad_alice.directory, "corp-ad");
    // Each alice's password works only on her own server.
    let err = expect_err(authenticate(&cfgs, "CORP\\alice", ALICE_PASSWORD));
    assert!(matches!(err, LdapError::WrongPassword { ref directory, .. } if directory == "corp-ad"));
    let err = expect_err(authenticate(&cfgs, "alice@example.org", AD_ALICE_PASSWORD));
    assert!(matches!(err, LdapError::WrongPassword { ref directory, .. } if directory == "openldap"));
    // No server without domains: a bare or foreign login has nowhere to go.
    for login in ["alice", "alice@elsewhere.net", "OTHER\\alice"] {
        let err = expect_err(authenticate(&cfgs, login, ALICE_PASSWORD));
        assert!(matches!(err, LdapError::NoDirectory { .. }), "{login}: {err:?}");
    }
    // With a default server, they go there whole; a listed domain still wins.
    cfgs[0].domains.clear();
    let bare = authenticate(&cfgs, "alice", ALICE_PASSWORD).expect("default server");
    assert_eq!(bare.directory, "openldap");
    let err = expect_err(authenticate(&cfgs, "alice@elsewhere.net", ALICE_PASSWORD));
    assert!(matches!(err, LdapError::UnknownUser { ref directory, .. } if directory == "openldap"));
    let ad_alice = authenticate(&cfgs, "alice@corp.example.com", AD_ALICE_PASSWORD).expect("ad");
    assert_eq!(ad_alice.directory, "corp-ad");
}

#[test]
fn unreachable_directory_and_bad_service_account_are_reported() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let mut cfg = slapd.openldap_config();
    cfg.bind_password = "not-the-service-password".to_owned();
    let err = expect_err(authenticate(std::slice::from_ref(&cfg), "alice", ALICE_PASSWORD));
    assert!(matches!(err, LdapError::ServiceBind { .. }), "{err:?}");
    assert!(!err.to_string().contains("not-the-service-password"));

    let [port] = free_ports::<1>();
    cfg.url = format!("ldap://127.0.0.1:{port}");
    let err = expect_err(authenticate(&[cfg], "alice", ALICE_PASSWORD));
    assert!(matches!(err, LdapError::Unreachable { .. }), "{err:?}");
}

#[test]
fn ldaps_and_starttls_verify_the_configured_ca() {
    let ca = TestCa::new();
    let slapd = Slapd::start(Flavor::OpenLdap, Some(&ca));
    let ldaps_port = slapd.ldaps_port.expect("ldaps port");

    let mut ldaps = slapd.openldap_config();
    ldaps.url = format!("ldaps://127.0.0.1:{ldaps_port}");
    ldaps.ca_pem = Some(ca.ca_pem());
    let user = authenticate(std::slice::from_ref(&ldaps), "alice", ALICE_PASSWORD).expect("ldaps");
    assert_eq!(user.username, "alice");

    let mut starttls = slapd.openldap_config();
    starttls.start_tls = true;
    starttls.ca_pem = Some(ca.ca_pem());
    let user = authenticate(std::slice::from_ref(&starttls), "alice", ALICE_PASSWORD).expect("starttls");
    assert_eq!(user.groups, s(&[DEVELOPERS]));
    assert_eq!(
        group_members(&starttls, DEVELOPERS).expect("members"),
        s(&["alice", STAR_UID])
    );

    // A server certificate from another CA is refused, over both paths.
    let other = TestCa::new();
    for mut cfg in [ldaps, starttls] {
        cfg.ca_pem = Some(other.ca_pem());
        let err = expect_err(authenticate(&[cfg], "alice", ALICE_PASSWORD));
        assert!(matches!(err, LdapError::Tls { .. }), "{err:?}");
    }
}

#[test]
fn starttls_to_a_server_without_tls_is_refused() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let mut cfg = slapd.openldap_config();
    cfg.start_tls = true;
    let err = expect_err(authenticate(&[cfg], "alice", ALICE_PASSWORD));
    assert!(matches!(err, LdapError::Tls { .. }), "{err:?}");
}

/// The daemon calls the blocking API from `spawn_blocking`; the client's own
/// runtime must not collide with the caller's.
#[test]
fn authenticate_runs_inside_spawn_blocking() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let cfg = slapd.openldap_config();
    let runtime = ldap3::tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let user = runtime
        .block_on(async move {
            ldap3::tokio::task::spawn_blocking(move || authenticate(&[cfg], "alice", ALICE_PASSWORD)).await
        })
        .expect("join")
        .expect("login");
    assert_eq!(user.username, "alice");
}

// --- directories in the access service: login, provisioning, team sync ---

use berth_auth::directory::{Directory, DirectoryGroup, REDACTED};
use berth_auth::Access;

/// An access service on a fresh store in a temp dir.
struct AccessFixture {
    _dir: tempfile::TempDir,
    access: Access,
}

fn access() -> AccessFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = berth_store::Store::open(&dir.path().join("db")).expect("store");
    let (access, _) = Access::open(berth_state::State::open(store).expect("state"), dir.path()).expect("open access");
    AccessFixture { _dir: dir, access }
}

fn directory(config: DirectoryConfig) -> Directory {
    Directory {
        config,
        sync_interval_minutes: None,
        created: String::new(),
    }
}

fn map_team(a: &Access, team: &str, directory: &str, group: &str) {
    a.create_team(team).expect("team");
    a.set_team_group(
        team,
        Some(DirectoryGroup {
            directory: directory.to_owned(),
            group: group.to_owned(),
        }),
    )
    .expect("map team");
}

fn teams_of(a: &Access, user: &str) -> Vec<String> {
    let mut teams = a.index().teams_of(user).to_vec();
    teams.sort();
    teams
}

fn members(a: &Access, team: &str) -> Vec<String> {
    let team = a
        .list_teams()
        .expect("teams")
        .into_iter()
        .find(|t| t.name == team)
        .expect("team exists");
    team.members.into_iter().collect()
}

/// The audit log holds no test secret, and the actions named.
fn audit_text(a: &Access) -> String {
    let entries = a.audit_list(&berth_auth::AuditQuery::default()).expect("audit");
    let text = serde_json::to_string(&entries).expect("json");
    for secret in SECRETS {
        assert!(!text.contains(secret), "secret in the audit log");
    }
    text
}

#[test]
fn directory_login_provisions_the_user_and_follows_its_groups() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let f = access();
    let a = &f.access;
    a.put_directory(directory(slapd.openldap_config())).expect("configure");
    map_team(a, "devs", "openldap", "developers");
    map_team(
        a,
        "admins",
        "openldap",
        &format!("cn=admins,ou=groups,{OPENLDAP_SUFFIX}"),
    );
    // Synced by search: decided at login with a search on her entry.
    map_team(a, "mailers", "openldap", "(mail=*@example.org)");
    map_team(a, "nobody", "openldap", "(mail=*@nowhere.invalid)");
    // A local user keeps its local password, even where a directory has the name.
    a.create_user("bob", "bob-local-password").expect("local bob");

    let alice = a
        .authenticate_login("alice", ALICE_PASSWORD, Some("10.1.1.1"))
        .expect("alice");
    assert_eq!(alice.name, "alice");
    assert_eq!(a.directory_of("alice").expect("read").as_deref(), Some("openldap"));
    let account = a
        .directory_accounts()
        .expect("accounts")
        .remove("alice")
        .expect("account");
    assert_eq!(account.dn, format!("uid=alice,ou=people,{OPENLDAP_SUFFIX}"));
    assert_eq!(account.email.as_deref(), Some("alice@example.org"));
    assert_eq!(teams_of(a, "alice"), s(&["devs", "mailers"]));
    // A second login does not provision again.
    a.authenticate_login("alice", ALICE_PASSWORD, Some("10.1.1.1"))
        .expect("again");
    let text = audit_text(a);
    assert_eq!(text.matches("\"directory provision\"").count(), 1, "{text}");
    assert!(
        text.contains("\"directory team add\"") && text.contains("team:devs/alice"),
        "{text}"
    );

    let refused = a
        .authenticate_login("bob", BOB_PASSWORD, None)
        .expect_err("directory password");
    assert_eq!(refused.reason, "wrong password");
    assert_eq!(
        a.authenticate_login("bob", "bob-local-password", None)
            .expect("local")
            .name,
        "bob"
    );
    assert_eq!(a.directory_of("bob").expect("read"), None);
    assert_eq!(teams_of(a, "bob"), s(&[]));

    // Refusals: unknown, ambiguous, invalid berth name; none provisions anyone.
    let cases = [
        ("mallory", ALICE_PASSWORD, "directory: no such user"),
        ("twin", BOB_PASSWORD, "directory: the login matches several entries"),
        (
            STAR_UID,
            STAR_PASSWORD,
            "the directory username is not a valid berth user name",
        ),
    ];
    for (login, password, reason) in cases {
        let failure = a.authenticate_login(login, password, None).expect_err(login);
        assert_eq!(failure.reason, reason, "{login}");
    }
    let users: Vec<String> = a.list_users().expect("users").into_iter().map(|u| u.name).collect();
    assert_eq!(users, s(&["admin", "alice", "bob"]));

    // Wrong directory passwords lock the login like local ones do, however
    // the login is spelled.
    for login in ["alice", "ALICE", "Alice", "alice", "aLiCe"] {
        let failure = a
            .authenticate_login(login, BOB_PASSWORD, Some("10.2.2.2"))
            .expect_err("wrong");
        assert_eq!(failure.reason, "directory: wrong password");
    }
    let locked = a
        .authenticate_login("alice", ALICE_PASSWORD, Some("10.3.3.3"))
        .expect_err("locked");
    assert_eq!(locked.reason, "user locked out after failed logins");
    audit_text(a);
}

#[test]
fn directory_sync_creates_users_adds_and_removes_members() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let f = access();
    let a = &f.access;
    let cfg = slapd.openldap_config();
    a.put_directory(directory(cfg.clone())).expect("configure");
    map_team(a, "devs", "openldap", DEVELOPERS);
    map_team(a, "mailers", "openldap", "(mail=*@example.org)");
    map_team(a, "ghosts", "openldap", &format!("cn=nope,ou=groups,{OPENLDAP_SUFFIX}"));
    // A local member of a synced team is never touched by sync.
    a.create_user("keeper", "keeper-password").expect("local user");
    a.set_member("devs", "keeper", true).expect("add keeper");

    let reports = a.sync_directories(None, "admin", "local").expect("sync");
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report.created_users, s(&["alice"]));
    let team = |name: &str| report.teams.iter().find(|t| t.team == name).expect(name).clone();
    assert_eq!(team("devs").added, s(&["alice"]));
    assert_eq!(team("devs").skipped.len(), 1, "{:?}", team("devs"));
    assert_eq!(team("devs").skipped[0].username, STAR_UID);
    assert_eq!(team("mailers").added, s(&["alice"]));
    assert!(team("ghosts").error.is_some(), "{:?}", team("ghosts"));
    assert_eq!(members(a, "devs"), s(&["alice", "keeper"]));
    assert_eq!(teams_of(a, "alice"), s(&["devs", "mailers"]));
    // Created by sync: managed by the directory, no local password works.
    assert_eq!(a.directory_of("alice").expect("read").as_deref(), Some("openldap"));
    assert!(a.authenticate_password("alice", "", None).is_err());

    // Nothing changed: nothing to do.
    let again = a.sync_directories(Some("openldap"), "admin", "local").expect("sync");
    assert!(again[0]
        .teams
        .iter()
        .all(|t| t.added.is_empty() && t.removed.is_empty()));

    slapd.modify(&format!(
        "dn: {DEVELOPERS}\nchangetype: modify\ndelete: member\n\
         member: uid=alice,ou=people,{OPENLDAP_SUFFIX}\n"
    ));
    let after = a.sync_directories(Some("openldap"), "admin", "local").expect("sync");
    let devs = after[0].teams.iter().find(|t| t.team == "devs").expect("devs");
    assert_eq!((devs.added.clone(), devs.removed.clone()), (s(&[]), s(&["alice"])));
    assert_eq!(members(a, "devs"), s(&["keeper"]));
    assert_eq!(teams_of(a, "alice"), s(&["mailers"]));
    let text = audit_text(a);
    assert!(
        text.contains("\"directory team remove\"") && text.contains("team:devs/alice"),
        "{text}"
    );
    assert!(text.contains("\"directory provision\""), "{text}");

    // An unreachable directory changes nothing; the stored bind password
    // survives a put without one.
    let mut down = cfg.clone();
    let [port] = free_ports::<1>();
    down.url = format!("ldap://127.0.0.1:{port}");
    down.bind_password = REDACTED.to_owned();
    a.put_directory(directory(down)).expect("reconfigure");
    let failed = a
        .sync_directories(Some("openldap"), "admin", "local")
        .expect("sync runs");
    assert!(failed[0].teams.iter().all(|t| t.error.is_some()), "{failed:?}");
    assert_eq!(members(a, "mailers"), s(&["alice"]));
    let view = a.get_directory("openldap").expect("view");
    assert_eq!(view.config.bind_password, REDACTED);
    assert!(!view.last_sync.expect("state").ok);
    let mut up = cfg;
    up.bind_password = String::new();
    a.put_directory(directory(up)).expect("reconfigure");
    let ok = a.sync_directories(Some("openldap"), "admin", "local").expect("sync");
    assert!(
        ok[0].teams.iter().any(|t| t.team == "devs" && t.error.is_none()),
        "{ok:?}"
    );
    assert!(a.get_directory("openldap").expect("view").last_sync.is_some());

    // Removing the directory removes its team mappings, not its users.
    a.remove_directory("openldap").expect("remove");
    assert!(a.team_groups().expect("mappings").is_empty());
    assert!(a.user_exists("alice").expect("read"));
    let refused = a
        .authenticate_login("alice", ALICE_PASSWORD, None)
        .expect_err("no directory");
    assert_eq!(refused.reason, "the user's directory is not configured");
}

#[test]
fn ad_login_by_domain_and_sync_by_group_name() {
    let slapd = Slapd::start(Flavor::ActiveDirectory, None);
    let f = access();
    let a = &f.access;
    a.put_directory(directory(slapd.ad_config())).expect("configure");
    // By name: matched against memberOf at login, looked up for sync.
    map_team(a, "developers", "corp-ad", "Developers");

    let alice = a
        .authenticate_login("CORP\\alice", AD_ALICE_PASSWORD, None)
        .expect("alice");
    assert_eq!(alice.name, "alice");
    assert_eq!(teams_of(a, "alice"), s(&["developers"]));
    // Provisioned: a bare login now goes to her directory.
    assert_eq!(
        a.authenticate_login("alice", AD_ALICE_PASSWORD, None)
            .expect("bare")
            .name,
        "alice"
    );
    let carol = a
        .authenticate_login("carol@corp.example.com", CAROL_PASSWORD, None)
        .expect("carol");
    assert_eq!(carol.name, "carol");
    assert_eq!(teams_of(a, "carol"), s(&[]));
    // No directory serves bare logins of unknown users here.
    let failure = a
        .authenticate_login("mallory", CAROL_PASSWORD, None)
        .expect_err("mallory");
    assert_eq!(failure.reason, "no such user, and no directory serves the login");

    let report = a.sync_directories(Some("corp-ad"), "admin", "local").expect("sync");
    let team = &report[0].teams[0];
    assert_eq!((team.error.clone(), team.added.clone()), (None, s(&[])), "{team:?}");
    slapd.modify(&format!(
        "dn: CN=Alice Admin,OU=Users,{AD_SUFFIX}\nchangetype: modify\ndelete: memberOf\n\
         memberOf: {AD_DEVELOPERS}\n"
    ));
    let report = a.sync_directories(Some("corp-ad"), "admin", "local").expect("sync");
    assert_eq!(report[0].teams[0].removed, s(&["alice"]));
    assert_eq!(teams_of(a, "alice"), s(&[]));

    // The directory test: the service account finds her, her password binds.
    let found = a.test_directory("corp-ad", "alice", None).expect("lookup");
    assert_eq!(found.groups, s(&[AD_DOMAIN_USERS]));
    let bound = a
        .test_directory("corp-ad", "alice", Some(AD_ALICE_PASSWORD))
        .expect("bind");
    assert_eq!(bound.dn, found.dn);
    let err = a
        .test_directory("corp-ad", "alice", Some(CAROL_PASSWORD))
        .expect_err("wrong password");
    assert!(!format!("{err} {err:?}").contains(CAROL_PASSWORD));
    audit_text(a);
}

#[test]
fn directory_configuration_is_checked_and_its_password_kept() {
    let f = access();
    let a = &f.access;
    let base = || DirectoryConfig {
        name: "corp".to_owned(),
        url: "ldaps://dc1.corp.example.com".to_owned(),
        start_tls: false,
        ca_pem: None,
        bind_dn: "cn=svc,dc=corp".to_owned(),
        bind_password: SERVICE_PASSWORD.to_owned(),
        user_base_dn: "dc=corp".to_owned(),
        user_filter: "(sAMAccountName={username})".to_owned(),
        username_attr: "sAMAccountName".to_owned(),
        email_attr: "mail".to_owned(),
        full_name_attr: "displayName".to_owned(),
        team_sync: TeamSync::UserMemberOf {
            attr: "memberOf".to_owned(),
        },
        domains: vec!["CORP".to_owned()],
    };
    let (view, created) = a.put_directory(directory(base())).expect("put");
    let mut bad_ca = base();
    bad_ca.ca_pem = Some("not a certificate".to_owned());
    assert!(
        a.put_directory(directory(bad_ca)).is_err(),
        "a CA PEM without a certificate"
    );
    assert!(created);
    assert_eq!(view.config.bind_password, REDACTED);

    type Edit = fn(&mut DirectoryConfig);
    let refused: [(&str, Edit); 6] = [
        ("plaintext off loopback", |c| {
            c.url = "ldap://dc1.corp.example.com".to_owned()
        }),
        ("reserved name", |c| c.name = "sync".to_owned()),
        ("invalid name", |c| c.name = "a b".to_owned()),
        ("a domain served twice", |c| {
            c.name = "other".to_owned();
            c.domains = vec!["corp".to_owned()];
        }),
        ("a bind DN without a password", |c| {
            c.name = "other".to_owned();
            c.domains = vec!["OTHER".to_owned()];
            c.bind_password = String::new();
        }),
        ("no placeholder in the filter", |c| c.user_filter = "(uid=x)".to_owned()),
    ];
    for (what, edit) in refused {
        let mut cfg = base();
        edit(&mut cfg);
        let err = a.put_directory(directory(cfg)).expect_err(what);
        assert!(!err.to_string().contains(SERVICE_PASSWORD), "{what}: {err}");
    }
    // Two servers for bare logins would make one unreachable.
    let mut default_one = base();
    default_one.name = "default-one".to_owned();
    default_one.domains.clear();
    a.put_directory(directory(default_one.clone())).expect("first default");
    default_one.name = "default-two".to_owned();
    assert!(a.put_directory(directory(default_one)).is_err());

    // Put back what the view shows: the password is kept, not replaced by ***.
    let mut again = base();
    again.bind_password = REDACTED.to_owned();
    let (_, created) = a.put_directory(directory(again)).expect("put again");
    assert!(!created);
    let store_text = serde_json::to_string(&a.list_directories().expect("list")).expect("json");
    assert!(!store_text.contains(SERVICE_PASSWORD), "{store_text}");
    // The mapping needs a team and a directory.
    assert!(a
        .set_team_group(
            "nope",
            Some(DirectoryGroup {
                directory: "corp".to_owned(),
                group: "x".to_owned()
            })
        )
        .is_err());
    a.create_team("t").expect("team");
    assert!(a
        .set_team_group(
            "t",
            Some(DirectoryGroup {
                directory: "nope".to_owned(),
                group: "x".to_owned()
            })
        )
        .is_err());
}

#[test]
fn search_team_sync_takes_filters_only() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let f = access();
    let a = &f.access;
    let mut cfg = slapd.openldap_config();
    cfg.team_sync = TeamSync::Search;
    a.put_directory(directory(cfg)).expect("configure");
    map_team(a, "mailers", "openldap", "(mail=*@example.org)");
    map_team(a, "devs", "openldap", DEVELOPERS);

    let bob = a.authenticate_login("bob", BOB_PASSWORD, None).expect("bob");
    assert_eq!(teams_of(a, &bob.name), s(&[]));
    let alice = a.authenticate_login("alice", ALICE_PASSWORD, None).expect("alice");
    assert_eq!(teams_of(a, &alice.name), s(&["mailers"]));

    let report = a.sync_directories(Some("openldap"), "admin", "local").expect("sync");
    let team = |name: &str| report[0].teams.iter().find(|t| t.team == name).expect(name).clone();
    assert_eq!(team("mailers").error, None);
    assert_eq!(team("mailers").added, s(&[]), "alice joined at login");
    let refused = team("devs").error.expect("a DN under search sync");
    assert!(refused.contains("not a (filter)"), "{refused}");
    assert_eq!(members(a, "devs"), s(&[]));

    // Her mail changes: the next sync takes her out.
    slapd.modify(&format!(
        "dn: uid=alice,ou=people,{OPENLDAP_SUFFIX}\nchangetype: modify\nreplace: mail\nmail: alice@elsewhere.net\n"
    ));
    let report = a.sync_directories(Some("openldap"), "admin", "local").expect("sync");
    let mailers = report[0].teams.iter().find(|t| t.team == "mailers").expect("mailers");
    assert_eq!(mailers.removed, s(&["alice"]));
    audit_text(a);
}

/// Adds users of department 42 (a team group by filter).
fn add_department_users(slapd: &Slapd, uids: &[&str]) {
    for uid in uids {
        slapd.modify(&format!(
            "dn: uid={uid},ou=people,{OPENLDAP_SUFFIX}\nchangetype: add\nobjectClass: inetOrgPerson\n\
             uid: {uid}\ncn: {uid}\nsn: {uid}\ndepartmentNumber: 42\n"
        ));
    }
}

/// `ldapsearch` as `bind_dn` without paging: its exit code is the result code.
fn plain_search_code(slapd: &Slapd, bind_dn: &str, filter: &str) -> i32 {
    let out = Command::new(LDAPSEARCH)
        .args(["-x", "-H", &slapd.url(), "-D", bind_dn, "-w", SERVICE_PASSWORD])
        .args(["-b", &format!("ou=people,{OPENLDAP_SUFFIX}"), filter, "1.1"])
        .output()
        .expect("ldapsearch (Debian package ldap-utils)");
    out.status.code().unwrap_or(-1)
}

#[test]
fn reads_past_a_size_limit_are_paged_and_a_cut_read_is_an_error() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let department = ["dept1", "dept2", "dept3", "dept4", "dept5"];
    add_department_users(&slapd, &department);
    let filter = "(departmentNumber=42)";
    let reader = format!("cn=reader,{OPENLDAP_SUFFIX}");
    // The limit holds: a plain search as the service account stops at 3.
    assert_eq!(plain_search_code(&slapd, &reader, filter), 4, "size limit exceeded");

    let cfg = slapd.openldap_config();
    assert_eq!(group_members(&cfg, filter).expect("paged read"), s(&department));
    let mut capped = cfg.clone();
    capped.name = "capped".to_owned();
    capped.bind_dn = CAPPED_DN.to_owned();
    let err = group_members(&capped, filter).expect_err("a read cut at 3 entries");
    assert!(matches!(err, LdapError::Incomplete { .. }), "{err:?}");
    assert!(err.to_string().contains("size limit exceeded"), "{err}");
    // One-entry lookups are not cut: the capped account still logs users in.
    let alice = authenticate(std::slice::from_ref(&capped), "alice", ALICE_PASSWORD).expect("login");
    assert_eq!(alice.groups, s(&[DEVELOPERS]));

    // Sync: the whole group is added; a cut read leaves the team alone.
    let f = access();
    let a = &f.access;
    a.put_directory(directory(cfg.clone())).expect("configure");
    map_team(a, "dept", "openldap", filter);
    let report = a.sync_directories(Some("openldap"), "admin", "local").expect("sync");
    assert_eq!(report[0].teams[0].added, s(&department), "{report:?}");
    slapd.modify(&format!(
        "dn: uid=dept5,ou=people,{OPENLDAP_SUFFIX}\nchangetype: modify\ndelete: departmentNumber\n"
    ));
    let mut capped_directory = cfg.clone();
    capped_directory.bind_dn = CAPPED_DN.to_owned();
    a.put_directory(directory(capped_directory)).expect("reconfigure");
    let report = a
        .sync_directories(Some("openldap"), "admin", "local")
        .expect("sync runs");
    let team = &report[0].teams[0];
    let error = team.error.clone().expect("the cut read is reported");
    assert!(
        error.contains("could not be read completely") && error.contains("size limit exceeded"),
        "{error}"
    );
    assert_eq!((team.added.len(), team.removed.len()), (0, 0), "{team:?}");
    assert_eq!(members(a, "dept"), s(&department));
    let state = a.get_directory("openldap").expect("view").last_sync.expect("state");
    assert!(
        !state.ok && state.errors[0].contains("size limit exceeded"),
        "{state:?}"
    );
    assert!(audit_text(a).contains("size limit exceeded"));

    // Read completely again, dept5 leaves.
    a.put_directory(directory(cfg)).expect("reconfigure");
    let report = a.sync_directories(Some("openldap"), "admin", "local").expect("sync");
    assert_eq!(report[0].teams[0].removed, s(&["dept5"]), "{report:?}");
}

#[test]
fn nested_groups_are_followed_with_cycles_and_a_depth_bound() {
    let slapd = Slapd::start(Flavor::OpenLdap, None);
    let cfg = slapd.openldap_config();
    let group = |cn: &str| format!("cn={cn},ou=groups,{OPENLDAP_SUFFIX}");
    let person = |uid: &str| format!("uid={uid},ou=people,{OPENLDAP_SUFFIX}");
    // platform lists developers (a group) and bob; developers lists platform
    // back (a cycle). A group outside the group base is not followed.
    let elsewhere = format!("cn=elsewhere,{OPENLDAP_SUFFIX}");
    slapd.modify(&format!(
        "dn: {elsewhere}\nchangetype: add\nobjectClass: groupOfNames\ncn: elsewhere\n\
         member: cn=Twin One,ou=people,{OPENLDAP_SUFFIX}\n\n\
         dn: {platform}\nchangetype: add\nobjectClass: groupOfNames\ncn: platform\n\
         member: {DEVELOPERS}\nmember: {bob}\nmember: {elsewhere}\n\n\
         dn: {DEVELOPERS}\nchangetype: modify\nadd: member\nmember: {platform}\n",
        platform = group("platform"),
        bob = person("bob"),
    ));
    let everyone = s(&["alice", "bob", STAR_UID]);
    assert_eq!(group_members(&cfg, &group("platform")).expect("platform"), everyone);
    assert_eq!(group_members(&cfg, DEVELOPERS).expect("developers"), everyone);
    let entries = group_member_entries(&cfg, "platform").expect("by name");
    assert_eq!(entries.len(), 3, "{entries:?}");
    // A login counts the same nesting.
    let alice = authenticate(std::slice::from_ref(&cfg), "alice", ALICE_PASSWORD).expect("alice");
    assert_eq!(alice.groups, s(&[DEVELOPERS, &group("platform")]));

    // level0 lists level1, ..., level8 lists level9, which lists bob.
    let mut ldif = String::new();
    for level in 0..10 {
        let member = if level == 9 {
            person("bob")
        } else {
            group(&format!("level{}", level + 1))
        };
        ldif.push_str(&format!(
            "dn: {}\nchangetype: add\nobjectClass: groupOfNames\ncn: level{level}\nmember: {member}\n\n",
            group(&format!("level{level}"))
        ));
    }
    slapd.modify(&ldif);
    // level9 is 8 levels below level1: read; 9 below level0: too deep.
    assert_eq!(group_members(&cfg, &group("level1")).expect("8 levels"), s(&["bob"]));
    let err = group_members(&cfg, &group("level0")).expect_err("9 levels");
    assert!(
        matches!(err, LdapError::Incomplete { .. }) && err.to_string().contains("nested deeper than 8 levels"),
        "{err}"
    );
    let bob = authenticate(std::slice::from_ref(&cfg), "bob", BOB_PASSWORD).expect("bob");
    for (team_group, member) in [
        ("level9", true),
        ("level1", true),
        ("level0", false),
        ("platform", true),
    ] {
        assert_eq!(
            in_group(&bob.groups, team_group),
            Some(member),
            "{team_group}: {:?}",
            bob.groups
        );
    }
}
