//! The `berth` binary: the CLI, the daemon (`berth daemon`) and the shims
//! (`berth shim`, `berth shim-exec`), all in one executable. This file only
//! parses arguments and dispatches; each verb group has its own module.

mod builtin_plugins;
mod cli;

mod daemon;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth", version, about = "berth: containers, images and more, in one binary")]
struct Args {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// The options every verb takes.
#[derive(clap::Args)]
struct Global {
    /// Daemon to talk to: unix:///path/to/berth.sock
    #[arg(
        short = 'H',
        long = "host",
        env = "BERTH_HOST",
        global = true,
        default_value = "unix:///run/berth/berth.sock"
    )]
    host: String,
    /// The cluster CA to trust for https:// hosts (PEM)
    #[arg(long = "tlscacert", env = "BERTH_TLS_CA", global = true)]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate for https:// hosts (PEM, from a bundle)
    #[arg(long = "tlscert", env = "BERTH_TLS_CERT", global = true)]
    tls_cert: Option<std::path::PathBuf>,
    /// Client key for --tlscert (PEM)
    #[arg(long = "tlskey", env = "BERTH_TLS_KEY", global = true)]
    tls_key: Option<std::path::PathBuf>,
}

/// The command line.
///
/// Building the parser for all of berth's verbs allocates and touches more
/// memory than the rest of a `berth run` does on the client side (about
/// 0.8 ms here). For the everyday container verbs the parser is first built
/// with that one verb only; it declares the verb's arguments exactly as the
/// full parser does (the same `clap::Args` type). Whatever it does not accept
/// (help, `--version`, any error) is parsed again by the full parser, so what
/// the user sees does not change.
fn parse_args() -> Args {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    quick_parse(&argv).unwrap_or_else(|| Args::parse_from(argv))
}

fn quick_parse(argv: &[std::ffi::OsString]) -> Option<Args> {
    use clap::FromArgMatches as _;
    let matches = quick_parser(verb_of(argv)?)?.try_get_matches_from(argv).ok()?;
    Args::from_arg_matches(&matches).ok()
}

/// The parser for `berth VERB ...` alone, for the verbs `quick_parse` takes.
fn quick_parser(verb: &str) -> Option<clap::Command> {
    use clap::Args as _;
    use cli::containers as c;
    let sub = clap::Command::new;
    let sub = match verb {
        "run" => c::RunArgs::augment_args(sub("run")),
        "create" => c::RunArgs::augment_args(sub("create")),
        "start" => c::StartArgs::augment_args(sub("start")),
        "ps" => c::PsArgs::augment_args(sub("ps")),
        "logs" => c::LogsArgs::augment_args(sub("logs")),
        "stop" => c::StopArgs::augment_args(sub("stop")),
        "kill" => c::KillArgs::augment_args(sub("kill")),
        "rm" => c::RmArgs::augment_args(sub("rm")),
        "exec" => c::ExecArgs::augment_args(sub("exec")),
        "inspect" => c::InspectArgs::augment_args(sub("inspect")),
        "wait" => c::WaitArgs::augment_args(sub("wait")),
        _ => return None,
    };
    Some(
        Global::augment_args(clap::Command::new("berth"))
            .subcommand_required(true)
            .subcommand(sub),
    )
}

/// `Global`'s options, each of which takes a value (a test checks the two
/// agree; one missing here only sends its command lines to the full parser).
const GLOBAL_OPTIONS: [&str; 5] = ["-H", "--host", "--tlscacert", "--tlscert", "--tlskey"];

/// The verb on a command line: the first word that is neither a global
/// option nor its value. `None` when an option comes first that is not one
/// of the global ones.
fn verb_of(argv: &[std::ffi::OsString]) -> Option<&str> {
    let mut words = argv.iter().skip(1);
    while let Some(word) = words.next() {
        let word = word.to_str()?;
        if !word.starts_with('-') {
            return Some(word);
        }
        if GLOBAL_OPTIONS.contains(&word) {
            words.next()?;
        } else if !GLOBAL_OPTIONS.iter().any(|o| {
            // `--host=VALUE`, or a short option with its value attached: `-HVALUE`.
            word.starts_with(&format!("{o}=")) || (o.len() == 2 && word.starts_with(o))
        }) {
            return None;
        }
    }
    None
}

#[derive(Subcommand)]
enum Command {
    /// Run the berth daemon
    Daemon(daemon::DaemonArgs),
    /// Container supervisor (started by the daemon)
    #[command(hide = true)]
    Shim(cli::shim::ShimArgs),
    /// Exec supervisor (started by the daemon)
    #[command(hide = true, name = "shim-exec")]
    ShimExec(cli::shim::ShimExecArgs),
    /// Forks container supervisors (started by the daemon)
    #[command(hide = true, name = "shim-zygote")]
    ShimZygote,
    /// Install built-in checks into a data root (run by the daemon)
    #[command(hide = true, name = "install-builtin-checks")]
    InstallBuiltinChecks(InstallBuiltinChecksArgs),
    /// Create and run a new container from an image
    Run(cli::containers::RunArgs),
    /// Create a new container without starting it
    Create(cli::containers::RunArgs),
    /// Start stopped containers
    Start(cli::containers::StartArgs),
    /// List containers
    Ps(cli::containers::PsArgs),
    /// Fetch the logs of a container
    Logs(cli::containers::LogsArgs),
    /// Stop running containers
    Stop(cli::containers::StopArgs),
    /// Kill running containers
    Kill(cli::containers::KillArgs),
    /// Remove containers
    Rm(cli::containers::RmArgs),
    /// Run a command in a running container
    Exec(cli::containers::ExecArgs),
    /// Show low-level information on containers or images
    Inspect(cli::containers::InspectArgs),
    /// Block until containers stop, then print their exit codes
    Wait(cli::containers::WaitArgs),
    /// Show resource usage of containers
    Stats(cli::containers::StatsArgs),
    /// Stream events from the daemon
    Events(cli::system::EventsArgs),
    /// Manage images
    Image(cli::images::ImageArgs),
    /// List images
    Images(cli::images::ListArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(cli::images::TagArgs),
    /// Remove images
    Rmi(cli::images::RmArgs),
    /// Download an image from a registry
    Pull(cli::images::PullArgs),
    /// Upload an image to a registry
    Push(cli::images::PushArgs),
    /// Log in to a registry (the daemon keeps the credentials)
    Login(cli::images::LoginArgs),
    /// Log out from a registry
    Logout(cli::images::LogoutArgs),
    /// Operate the registry this daemon serves
    Registry(cli::registry::RegistryArgs),
    /// Show the daemon's version (fails when no daemon answers)
    Version(cli::system::VersionArgs),
    /// Show node information
    Info(cli::system::VersionArgs),
    /// Manage users
    User(cli::access::UserArgs),
    /// Manage teams
    Team(cli::access::TeamArgs),
    /// Manage organizations
    Org(cli::access::OrgArgs),
    /// Manage roles
    Role(cli::access::RoleArgs),
    /// Grant roles on collections
    Grant(cli::access::GrantArgs),
    /// Manage personal access tokens
    Token(cli::access::TokenArgs),
    /// LDAP / Active Directory servers: logins, team sync
    Directory(cli::access::DirectoryArgs),
    /// Read and verify the audit log
    Audit(cli::audit::AuditArgs),
    /// Client bundles: certificates that let a user in over TLS
    Bundle(cli::bundle::BundleArgs),
    /// The cluster: info, join tokens
    Cluster(cli::cluster::ClusterArgs),
    /// Manage the cluster's nodes
    Node(cli::cluster::NodeArgs),
    /// Containers the managers keep running on every node that meets
    /// their constraints
    Assignment(cli::cluster::AssignmentArgs),
    /// Content trust: sign and verify images, signers, keys, policies
    Trust(cli::trust::TrustArgs),
    /// Scan an image (vulnerabilities, licenses, checks, SBOM); list and verify records
    Scan(cli::scan::ScanArgs),
    /// The vulnerability database: import OSV data, status
    Vulndb(cli::scan::VulndbArgs),
    /// Scanner plugins: install, list, enable, disable, remove, push
    Plugin(cli::scan::PluginArgs),
}

/// `berth install-builtin-checks`: compiles and installs built-in checks
/// (disabled) for the daemon, in a process of their own.
#[derive(clap::Args)]
struct InstallBuiltinChecksArgs {
    #[arg(long)]
    data_root: std::path::PathBuf,
    /// `name@version` of each check to install
    plugins: Vec<String>,
}

fn main() {
    // The zygote forks every shim: it skips argument parsing (and the pages
    // it would touch) so that it stays small.
    if std::env::args_os().nth(1).is_some_and(|a| a == "shim-zygote") {
        berth_runtime::zygote::serve()
    }
    let args = parse_args();
    // The shims must create the container before any thread exists.
    match args.command {
        Command::Shim(a) => cli::shim::run(a),
        Command::ShimExec(a) => cli::shim::run_exec(a),
        Command::ShimZygote => berth_runtime::zygote::serve(),
        Command::InstallBuiltinChecks(a) => {
            let builtins = builtin_plugins::all();
            match berth_engine::builtin_plugins::install_here(&a.data_root, &builtins, &a.plugins) {
                Ok(()) => std::process::exit(0),
                Err(e) => {
                    eprintln!("berth: {e}");
                    std::process::exit(1)
                }
            }
        }
        command => {
            // The daemon and the content-trust paths (which block on fetches
            // inside `block_in_place`) need worker threads; every other
            // command is one request or stream, served faster by one thread
            // (no hand-offs between the main thread and the workers).
            let threaded =
                matches!(command, Command::Daemon(_) | Command::Trust(_)) || cli::trust::content_trust_enabled();
            let mut builder = if threaded {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            } else {
                tokio::runtime::Builder::new_current_thread()
            };
            let rt = match builder.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("berth: starting the async runtime: {e}");
                    std::process::exit(125);
                }
            };
            let tls = berth_client::TlsFiles {
                ca: args.global.tls_ca,
                cert: args.global.tls_cert,
                key: args.global.tls_key,
            };
            let code = rt.block_on(dispatch(&args.global.host, &tls, command));
            // Don't wait for stdin readers blocked in the background.
            rt.shutdown_timeout(std::time::Duration::from_millis(10));
            std::process::exit(code)
        }
    }
}

async fn dispatch(host: &str, tls: &berth_client::TlsFiles, command: Command) -> i32 {
    let result = async {
        if let Command::Daemon(a) = command {
            return daemon::run(a).await.map(|_| 0);
        }
        let client = berth_client::Client::new(host, tls)?;
        match command {
            Command::Run(a) => cli::containers::run(&client, a, true).await,
            Command::Create(a) => cli::containers::run(&client, a, false).await,
            Command::Start(a) => cli::containers::start(&client, a).await,
            Command::Ps(a) => cli::containers::ps(&client, a).await,
            Command::Logs(a) => cli::containers::logs(&client, a).await,
            Command::Stop(a) => cli::containers::stop(&client, a).await,
            Command::Kill(a) => cli::containers::kill(&client, a).await,
            Command::Rm(a) => cli::containers::rm(&client, a).await,
            Command::Exec(a) => cli::containers::exec(&client, a).await,
            Command::Inspect(a) => cli::containers::inspect(&client, a).await,
            Command::Wait(a) => cli::containers::wait(&client, a).await,
            Command::Stats(a) => cli::containers::stats(&client, a).await,
            Command::Events(a) => cli::system::events(&client, a).await,
            Command::Image(a) => cli::images::image(&client, a).await,
            Command::Images(a) => cli::images::list(&client, a).await,
            Command::Tag(a) => cli::images::tag(&client, a).await,
            Command::Rmi(a) => cli::images::rmi(&client, a).await,
            Command::Pull(a) => cli::images::pull(&client, a).await,
            Command::Push(a) => cli::images::push(&client, a).await,
            Command::Login(a) => cli::images::login(&client, a).await,
            Command::Logout(a) => cli::images::logout(&client, a).await,
            Command::Registry(a) => cli::registry::registry(&client, a).await,
            Command::Version(a) => cli::system::version(&client, a).await,
            Command::Info(a) => cli::system::info(&client, a).await,
            Command::User(a) => cli::access::user(&client, a).await,
            Command::Team(a) => cli::access::team(&client, a).await,
            Command::Org(a) => cli::access::org(&client, a).await,
            Command::Role(a) => cli::access::role(&client, a).await,
            Command::Grant(a) => cli::access::grant(&client, a).await,
            Command::Token(a) => cli::access::token(&client, a).await,
            Command::Directory(a) => cli::access::directory(&client, a).await,
            Command::Audit(a) => cli::audit::audit(&client, a).await,
            Command::Bundle(a) => cli::bundle::bundle(&client, host, a).await,
            Command::Cluster(a) => cli::cluster::cluster(&client, a).await,
            Command::Node(a) => cli::cluster::node(&client, a).await,
            Command::Assignment(a) => cli::cluster::assignment(&client, a).await,
            Command::Trust(a) => cli::trust::trust(&client, tls, a).await,
            Command::Scan(a) => cli::scan::scan(&client, a).await,
            Command::Vulndb(a) => cli::scan::vulndb(&client, host, a).await,
            Command::Plugin(a) => cli::scan::plugin(&client, a).await,
            Command::Daemon(_)
            | Command::Shim(_)
            | Command::ShimExec(_)
            | Command::ShimZygote
            | Command::InstallBuiltinChecks(_) => Ok(0),
        }
    }
    .await;
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = e.downcast_ref::<berth_client::ExitError>().map(|x| x.0).unwrap_or(1);
            eprintln!("berth: {e:#}");
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::ffi::OsString;

    const QUICK: [&str; 11] = [
        "run", "create", "start", "ps", "logs", "stop", "kill", "rm", "exec", "inspect", "wait",
    ];

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("berth")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn the_quick_parser_declares_each_verb_as_the_full_one_does() {
        let full = Args::command();
        for verb in QUICK {
            let quick = quick_parser(verb).unwrap_or_else(|| panic!("{verb} has no quick parser"));
            let quick = quick.find_subcommand(verb).unwrap();
            let whole = full
                .find_subcommand(verb)
                .unwrap_or_else(|| panic!("berth has no verb {verb}"));
            let ids = |c: &clap::Command| {
                let mut v: Vec<String> = c.get_arguments().map(|a| a.get_id().to_string()).collect();
                v.sort();
                v
            };
            assert_eq!(ids(quick), ids(whole), "arguments of {verb}");
            assert_eq!(
                quick.is_trailing_var_arg_set(),
                whole.is_trailing_var_arg_set(),
                "{verb}"
            );
        }
        assert!(quick_parser("image").is_none());
    }

    #[test]
    fn the_quick_parser_reads_a_command_line_as_the_full_one_does() {
        let lines: [&[&str]; 8] = [
            &["run", "--rm", "busybox", "/bin/true"],
            &[
                "-H",
                "unix:///tmp/x.sock",
                "run",
                "--rm",
                "-e",
                "A=1",
                "--name",
                "n",
                "busybox",
                "sh",
                "-c",
                "echo hi",
            ],
            &["--host=unix:///tmp/x.sock", "exec", "-it", "c1", "ls", "-l"],
            &["--tlscacert", "ca.pem", "ps", "-a", "--format", "json"],
            &["run", "-d", "--memory", "64m", "busybox", "sleep", "9", "-H", "x"],
            &["logs", "-f", "--tail", "3", "c1"],
            &["rm", "-f", "a", "b"],
            &["wait", "c1"],
        ];
        for line in lines {
            let argv = argv(line);
            let quick = quick_parser(verb_of(&argv).unwrap())
                .unwrap()
                .try_get_matches_from(&argv);
            let whole = Args::command().try_get_matches_from(&argv);
            let (quick, whole) = (quick.unwrap(), whole.unwrap());
            assert_eq!(quick.subcommand(), whole.subcommand(), "{line:?}");
            for id in ["host", "tls_ca", "tls_cert", "tls_key"] {
                assert_eq!(
                    quick.get_raw(id).map(|v| v.collect::<Vec<_>>()),
                    whole.get_raw(id).map(|v| v.collect::<Vec<_>>()),
                    "{id} in {line:?}"
                );
            }
            assert!(quick_parse(&argv).is_some(), "{line:?}");
        }
    }

    #[test]
    fn the_global_options_are_globals_own() {
        use clap::Args as _;
        let globals = Global::augment_args(clap::Command::new("berth"));
        let mut declared: Vec<String> = globals
            .get_arguments()
            .flat_map(|a| {
                assert!(a.get_action().takes_values(), "{} takes a value", a.get_id());
                a.get_short()
                    .map(|c| format!("-{c}"))
                    .into_iter()
                    .chain(a.get_long().map(|l| format!("--{l}")))
            })
            .collect();
        declared.sort();
        let mut listed: Vec<String> = GLOBAL_OPTIONS.iter().map(|o| o.to_string()).collect();
        listed.sort();
        assert_eq!(declared, listed);
    }

    #[test]
    fn what_the_quick_parser_does_not_take_goes_to_the_full_one() {
        for line in [
            &["run", "--help"][..],
            &["--version"],
            &["run", "--no-such-flag", "busybox"],
            &["run"],
            &["image", "ls"],
            &["--verbose", "run", "busybox"],
            &["-H"],
            &[],
        ] {
            assert!(quick_parse(&argv(line)).is_none(), "{line:?}");
        }
    }
}
