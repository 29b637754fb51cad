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

use berth_auth::ldap::{authenticate, group_members, sync_plan, DirectoryConfig, DirectoryUser, LdapError, TeamSync};

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const SLAPPASSWD: &str = "/usr/sbin/slappasswd";
const LDAPMODIFY: &str = "/usr/bin/ldapmodify";

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
