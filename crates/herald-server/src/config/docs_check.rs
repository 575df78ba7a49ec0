//! Holds `docs/configuration.md`'s table to the one declaration in `settings`, so they cannot
//! drift: every setting is documented with its flag, environment variable, file key and default;
//! nothing documented is missing from the declaration; and each default the help and the docs
//! state is the value the hub really runs with.

use super::{settings::ServeArgs, ServeConfig};
use clap::{Args, Command, Parser};

const CONFIGURATION_MD: &str = include_str!("../../../../docs/configuration.md");

/// One row of the table: flag, environment variable, TOML key, default.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    flag: String,
    env: String,
    key: String,
    default: String,
}

/// The settings table's rows, cells without backticks.
fn documented_rows() -> Vec<Row> {
    CONFIGURATION_MD
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .map(|line| {
            let cells: Vec<String> = line
                .split('|')
                .map(|cell| cell.trim().replace('`', ""))
                .collect();
            assert!(cells.len() >= 6, "a settings row has five columns: {line}");
            Row {
                flag: cells[1].clone(),
                env: cells[2].clone(),
                key: cells[3].clone(),
                default: default_key(&cells[4]).to_owned(),
            }
        })
        .collect()
}

/// What a default says before any explanation: `67108864` of `67108864 (64 MiB)` or of
/// `67108864, 64 MiB`.
fn default_key(text: &str) -> &str {
    text.split([',', '(']).next().unwrap_or("").trim()
}

/// The rows the declaration implies, one per argument of `herald serve`.
fn declared_rows() -> Vec<Row> {
    ServeArgs::augment_args(Command::new("serve"))
        .get_arguments()
        .filter(|arg| arg.get_id() != "help")
        .map(|arg| {
            let id = arg.get_id().as_str().to_owned();
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let default = help
                .split_once("[default: ")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(default, _)| default_key(default).to_owned())
                .unwrap_or_else(|| panic!("--{id}'s help names its default: {help}"));
            Row {
                flag: format!(
                    "--{}",
                    arg.get_long().expect("every setting is a long flag")
                ),
                env: arg
                    .get_env()
                    .and_then(|env| env.to_str())
                    .unwrap_or_else(|| panic!("--{id} reads an environment variable"))
                    .to_owned(),
                // The file holds every setting under its field name, except the file's own path.
                key: if id == "config" { String::new() } else { id },
                default,
            }
        })
        .collect()
}

#[test]
fn every_setting_is_documented_with_its_flag_environment_variable_and_default() {
    let documented = documented_rows();
    for declared in declared_rows() {
        let row = documented
            .iter()
            .find(|row| row.flag == declared.flag)
            .unwrap_or_else(|| panic!("docs/configuration.md lacks {}", declared.flag));
        assert_eq!(
            row, &declared,
            "docs/configuration.md disagrees with --help"
        );
    }
}

#[test]
fn every_documented_setting_exists() {
    let declared = declared_rows();
    let documented = documented_rows();
    assert!(!documented.is_empty(), "the settings table is found");
    for row in documented {
        assert!(
            declared.iter().any(|d| d.flag == row.flag),
            "docs/configuration.md documents {}, which herald serve does not have",
            row.flag
        );
    }
}

/// `herald serve` as a parser of its own, for the tests.
#[derive(Debug, Parser)]
struct Serve {
    #[command(flatten)]
    args: ServeArgs,
}

fn resolved(argv: &[&str]) -> ServeConfig {
    let argv = std::iter::once("serve").chain(argv.iter().copied());
    Serve::try_parse_from(argv)
        .expect("the arguments parse")
        .args
        .resolve()
        .expect("the settings are valid")
}

#[test]
fn documented_defaults_are_the_defaults_in_effect() {
    // Some settings only act with another one (`--fsync` with `--data-dir`): try each default
    // in every mode.
    let modes: [&[&str]; 3] = [
        &[],
        &["--data-dir", "/tmp/herald-docs-check"],
        &["--redis-url", "redis://127.0.0.1:6379", "--node-id", "n1"],
    ];
    let mut checked = 0;
    for row in declared_rows() {
        // Descriptive defaults ("none", "node- and random letters") are not values to pass.
        if row.default == "none" || row.default.contains(' ') {
            continue;
        }
        for mode in modes {
            if mode.contains(&row.flag.as_str()) {
                continue;
            }
            let implicit = format!("{:?}", resolved(mode));
            let explicit_argv: Vec<&str> = mode
                .iter()
                .copied()
                .chain([row.flag.as_str(), row.default.as_str()])
                .collect();
            let explicit = format!("{:?}", resolved(&explicit_argv));
            assert_eq!(
                implicit, explicit,
                "{} {} is documented as the default, but the default differs",
                row.flag, row.default
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "most defaults are checked: {checked}");
}

#[test]
fn the_example_file_in_the_docs_is_a_valid_config_file() {
    let example = CONFIGURATION_MD
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/configuration.md has an example file");
    let settings: super::settings::Settings =
        toml::from_str(example).expect("the example file parses");
    assert!(
        settings.listen.is_some(),
        "the example sets a few keys: {settings:?}"
    );
}
