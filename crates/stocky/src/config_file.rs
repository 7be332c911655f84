//! The configuration file, and `stocky config check | default`.
//!
//! Settings are layered: built-in defaults → the TOML file (`--config FILE`, or
//! `STOCKY_CONFIG`) → environment variables (the seeds' names) → flags. The file has a
//! `[hub]` and an `[edge]` table whose keys are the long flag names of `stocky hub` and
//! `stocky edge` (`max-body-bytes` or `max_body_bytes`).
//!
//! Invariants:
//! - The file only supplies defaults: a value from the file is installed as the flag's
//!   default before parsing, so an environment variable or a flag given on the command line
//!   still wins, and clap validates the file's values exactly like typed ones.
//! - An unknown table or key is an error that names it (a typo never silently does
//!   nothing), as is a value that is not a string, number, boolean or array of them.
//! - Secrets (flags whose environment value is hidden from `--help`) are printed as `***`
//!   by `stocky config check`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};

/// The tables a file may have: the subcommands they configure.
pub const SECTIONS: [&str; 2] = ["hub", "edge"];

/// Arguments that are not settings.
const NOT_SETTINGS: [&str; 3] = ["help", "version", "config"];

/// A parsed configuration file: per section, flag id → its values as text.
#[derive(Debug, Default)]
pub struct ConfigFile {
    pub path: Option<PathBuf>,
    sections: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// The file named by `--config FILE` / `--config=FILE` anywhere in `args`, else by
/// `STOCKY_CONFIG`.
pub fn path_from(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("STOCKY_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The settings a section may hold: the section's subcommand's own flags.
fn settings(command: &Command) -> impl Iterator<Item = &Arg> {
    command
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_SETTINGS.contains(&a.get_id().as_str()))
}

/// The flag `key` names in `command` (`max-body-bytes` or `max_body_bytes`).
fn setting<'c>(command: &'c Command, key: &str) -> Option<&'c Arg> {
    let key = key.replace('_', "-");
    settings(command).find(|a| a.get_long() == Some(key.as_str()))
}

impl ConfigFile {
    /// Reads and checks `path` against the subcommands of `cli`.
    pub fn load(path: &Path, cli: &Command) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let mut file = Self::parse(&text, cli)
            .with_context(|| format!("in the configuration file {}", path.display()))?;
        file.path = Some(path.to_owned());
        Ok(file)
    }

    fn parse(text: &str, cli: &Command) -> anyhow::Result<ConfigFile> {
        let table: toml::Table = text.parse().context("not valid TOML")?;
        let mut file = ConfigFile::default();
        for (section, values) in table {
            let Some(command) = SECTIONS
                .contains(&section.as_str())
                .then(|| cli.find_subcommand(&section))
                .flatten()
            else {
                bail!(
                    "unknown table [{section}] (or a key outside a table); the tables are {}",
                    SECTIONS.map(|s| format!("[{s}]")).join(" and ")
                );
            };
            let toml::Value::Table(values) = values else {
                bail!("`{section}` must be a table: [{section}]");
            };
            let mut parsed = BTreeMap::new();
            for (key, value) in values {
                let Some(arg) = setting(command, &key) else {
                    let known: Vec<&str> = settings(command).filter_map(Arg::get_long).collect();
                    bail!(
                        "unknown key `{key}` in [{section}]; the keys are: {}",
                        known.join(", ")
                    );
                };
                let values = texts(&value).with_context(|| format!("[{section}] {key}"))?;
                parsed.insert(arg.get_id().to_string(), values);
            }
            file.sections.insert(section, parsed);
        }
        Ok(file)
    }

    /// `cli` with the file's values installed as the defaults of its subcommands' flags.
    pub fn apply(&self, mut cli: Command) -> Command {
        for (section, values) in &self.sections {
            cli = cli.mut_subcommand(section, |mut command| {
                for (id, texts) in values {
                    let leaked: Vec<&'static str> = texts
                        .iter()
                        .map(|t| &*Box::leak(t.clone().into_boxed_str()))
                        .collect();
                    command = command.mut_arg(id, |arg| match arg.get_action() {
                        ArgAction::Append => arg.default_values(leaked),
                        _ => arg.default_value(leaked[0]),
                    });
                }
                command
            });
        }
        cli
    }

    /// Whether the file set `id` in `section`.
    fn sets(&self, section: &str, id: &str) -> bool {
        self.sections
            .get(section)
            .is_some_and(|values| values.contains_key(id))
    }
}

/// A TOML value as the flag text(s) clap parses.
fn texts(value: &toml::Value) -> anyhow::Result<Vec<String>> {
    Ok(match value {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Integer(i) => vec![i.to_string()],
        toml::Value::Float(f) => vec![f.to_string()],
        toml::Value::Boolean(b) => vec![b.to_string()],
        toml::Value::Array(items) => {
            let mut all = Vec::new();
            for item in items {
                match item {
                    toml::Value::Array(_) | toml::Value::Table(_) => {
                        bail!("an array may hold strings, numbers or booleans only")
                    }
                    item => all.extend(texts(item)?),
                }
            }
            if all.is_empty() {
                bail!("an empty array sets nothing: leave the key out");
            }
            all
        }
        toml::Value::Datetime(d) => vec![d.to_string()],
        toml::Value::Table(_) => bail!("must be a value, not a table"),
    })
}

/// `stocky config check`: the effective settings of `section` (or every section) after
/// defaults, the file and the environment, one per line with where each came from.
pub fn check(cli: &Command, file: &ConfigFile, section: Option<&str>) -> anyhow::Result<String> {
    let mut out = String::new();
    match &file.path {
        Some(path) => out.push_str(&format!("# {}: valid\n", path.display())),
        None => out.push_str("# no configuration file (--config or STOCKY_CONFIG)\n"),
    }
    let cli = file.apply(cli.clone());
    for name in SECTIONS {
        if section.is_some_and(|s| s != name) {
            continue;
        }
        let command = cli.find_subcommand(name).context("subcommand")?.clone();
        let matches = command
            .clone()
            .no_binary_name(true)
            .try_get_matches_from(Vec::<OsString>::new())
            .map_err(|e| anyhow::anyhow!("[{name}]: {}", e.render().to_string().trim()))?;
        out.push_str(&format!("\n[{name}]\n"));
        for arg in settings(&command) {
            let id = arg.get_id().as_str();
            let key = arg.get_long().unwrap_or(id);
            let Some(raw) = matches.get_raw(id) else {
                out.push_str(&format!("# {key} is not set\n"));
                continue;
            };
            let values: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
            let source = match matches.value_source(id) {
                Some(ValueSource::EnvVariable) => format!(
                    "environment {}",
                    arg.get_env()
                        .map(|e| e.to_string_lossy())
                        .unwrap_or_default()
                ),
                Some(ValueSource::CommandLine) => "command line".into(),
                _ if file.sets(name, id) => "file".into(),
                _ => "default".into(),
            };
            let shown = if arg.is_hide_env_values_set() {
                "\"***\"".to_owned()
            } else {
                toml_text(arg, &values)
            };
            out.push_str(&format!("{key} = {shown}  # {source}\n"));
        }
    }
    Ok(out)
}

/// `stocky config default`: a commented file with every setting at its default.
pub fn default_file(cli: &Command) -> String {
    let mut out = String::from(
        "# Stocky configuration (TOML). Pass it with `--config FILE` or STOCKY_CONFIG.\n\
         # Precedence: built-in defaults < this file < environment variables < flags.\n\
         # Every setting below is commented out at its default; keys are the flag names.\n",
    );
    for name in SECTIONS {
        let Some(command) = cli.find_subcommand(name) else {
            continue;
        };
        out.push_str(&format!("\n[{name}]\n"));
        for arg in settings(command) {
            let key = arg.get_long().unwrap_or_default();
            if let Some(help) = arg.get_help() {
                for line in help.to_string().lines() {
                    out.push_str(&format!("# {line}\n"));
                }
            }
            if let Some(env) = arg.get_env() {
                out.push_str(&format!("# (environment: {})\n", env.to_string_lossy()));
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if defaults.is_empty() {
                out.push_str(&format!("# {key} =\n\n"));
            } else {
                out.push_str(&format!("# {key} = {}\n\n", toml_text(arg, &defaults)));
            }
        }
    }
    out
}

/// Values as TOML: numbers and booleans bare, everything else quoted, several as an array.
fn toml_text(arg: &Arg, values: &[String]) -> String {
    let one = |v: &String| {
        let bare = v.parse::<i64>().is_ok()
            || v.parse::<f64>().is_ok_and(|f| f.is_finite())
            || v == "true"
            || v == "false";
        if bare {
            v.clone()
        } else {
            toml::Value::String(v.clone()).to_string()
        }
    };
    if matches!(arg.get_action(), ArgAction::Append) || values.len() > 1 {
        format!(
            "[{}]",
            values.iter().map(one).collect::<Vec<_>>().join(", ")
        )
    } else {
        values.first().map(one).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        Hub {
            #[arg(long, env = "STOCKY_TEST_CONFIG_PORT", default_value_t = 3000)]
            port: u16,
            #[arg(long, value_delimiter = ',', default_value = "a")]
            cors_origins: Vec<String>,
            #[arg(long, env = "STOCKY_TEST_CONFIG_SECRET", hide_env_values = true)]
            jwt_secret: Option<String>,
        },
        Edge {
            #[arg(long, default_value_t = 3001)]
            port: u16,
        },
    }

    fn cli() -> Command {
        <Cli as clap::CommandFactory>::command()
    }

    #[test]
    fn the_file_sets_defaults_that_flags_override() {
        let file = ConfigFile::parse(
            "[hub]\nport = 4100\ncors_origins = [\"x\", \"y\"]\n[edge]\nport = 4200\n",
            &cli(),
        )
        .unwrap();
        let parse = |args: &[&str]| {
            let matches = file
                .apply(cli())
                .try_get_matches_from(std::iter::once("stocky").chain(args.iter().copied()))
                .unwrap();
            <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap()
        };
        match parse(&["hub"]).command {
            Sub::Hub {
                port, cors_origins, ..
            } => assert_eq!((port, cors_origins), (4100, vec!["x".into(), "y".into()])),
            Sub::Edge { .. } => unreachable!(),
        }
        match parse(&["hub", "--port", "5"]).command {
            Sub::Hub { port, .. } => assert_eq!(port, 5, "a flag beats the file"),
            Sub::Edge { .. } => unreachable!(),
        }
        match parse(&["edge"]).command {
            Sub::Edge { port } => assert_eq!(port, 4200),
            Sub::Hub { .. } => unreachable!(),
        }
    }

    #[test]
    fn unknown_tables_keys_and_values_are_named() {
        let error = |text: &str| format!("{:#}", ConfigFile::parse(text, &cli()).unwrap_err());
        assert!(error("[hub]\nprot = 1\n").contains("unknown key `prot` in [hub]"));
        assert!(error("[hbu]\nport = 1\n").contains("unknown table [hbu]"));
        assert!(error("port = 1\n").contains("unknown table [port]"));
        assert!(error("[hub]\nport = { a = 1 }\n").contains("[hub] port"));
        assert!(error("[hub\n").contains("not valid TOML"));
    }

    #[test]
    fn check_reports_sources_and_hides_secrets() {
        let file =
            ConfigFile::parse("[hub]\nport = 4100\njwt-secret = \"s3cr3t\"\n", &cli()).unwrap();
        let report = check(&cli(), &file, Some("hub")).unwrap();
        assert!(report.contains("port = 4100  # file"), "{report}");
        assert!(report.contains("jwt-secret = \"***\"  # file"), "{report}");
        assert!(!report.contains("s3cr3t"), "{report}");
        assert!(
            report.contains("cors-origins = [\"a\"]  # default"),
            "{report}"
        );
        let default = default_file(&cli());
        assert!(
            default.contains("[hub]") && default.contains("# port = 3000"),
            "{default}"
        );
        let reparsed = ConfigFile::parse(&default, &cli()).unwrap();
        assert!(
            reparsed.sections.values().all(BTreeMap::is_empty),
            "all commented out"
        );
    }
}
