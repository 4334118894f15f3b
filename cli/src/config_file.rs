//! `kist serve --config FILE`: a TOML file whose keys are the command's
//! long flags (`addr = "0.0.0.0:5000"`, `gc-interval = "30m"`,
//! `anonymous-pull = true`; `_` may stand for `-`), the global ones
//! (`store`, `format`, `as`) included. The file's settings go on the
//! command line before the flags given there, so a flag given on the
//! command line overrides the file (and the file overrides `KIST_STORE`
//! and `KIST_HOLDER`, as any flag does).

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, bail};

/// `argv` with the settings of the `--config` file of a `serve` command
/// inserted right after `serve`; unchanged when there is none.
pub fn expand(argv: Vec<OsString>, serve: &clap::Command) -> anyhow::Result<Vec<OsString>> {
    let Some(at) = subcommand_at(&argv).filter(|&at| argv[at] == "serve") else {
        return Ok(argv);
    };
    let Some(path) = config_path(&argv[at + 1..]) else {
        return Ok(argv);
    };
    let flags = flags(Path::new(&path), serve)?;
    let mut expanded = argv;
    expanded.splice(at + 1..at + 1, flags);
    Ok(expanded)
}

/// Where the subcommand is in `argv`: its first argument that is neither
/// a global flag nor a global flag's value.
fn subcommand_at(argv: &[OsString]) -> Option<usize> {
    let mut at = 1;
    while let Some(arg) = argv.get(at) {
        match arg.to_str() {
            Some("--store" | "--format" | "--as") => at += 2,
            Some(flag) if flag.starts_with('-') => at += 1,
            _ => return Some(at),
        }
    }
    None
}

/// The value of `--config` among `args`, if given.
fn config_path(args: &[OsString]) -> Option<OsString> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            return None;
        }
        if arg == "--config" {
            return args.next().cloned();
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(path.into());
        }
    }
    None
}

/// The file's settings as long flags of `serve` (or global ones).
fn flags(path: &Path, serve: &clap::Command) -> anyhow::Result<Vec<OsString>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{}: not valid TOML", path.display()))?;
    let known = |name: &str| {
        name != "config"
            && (["store", "format", "as"].contains(&name)
                || serve.get_arguments().any(|a| a.get_long() == Some(name)))
    };
    let mut flags = Vec::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        if !known(&name) {
            bail!("{}: `{key}` is not a flag of `kist serve`", path.display());
        }
        let values = match value {
            toml::Value::Array(items) => items,
            one => vec![one],
        };
        for value in values {
            match value {
                toml::Value::Boolean(true) => flags.push(format!("--{name}").into()),
                // Absent is false: a flag given on the command line wins.
                toml::Value::Boolean(false) => {}
                toml::Value::String(s) => flags.push(format!("--{name}={s}").into()),
                toml::Value::Integer(n) => flags.push(format!("--{name}={n}").into()),
                toml::Value::Float(x) => flags.push(format!("--{name}={x}").into()),
                other => bail!(
                    "{}: `{key}` is a {}; give a string, number or boolean",
                    path.display(),
                    other.type_str()
                ),
            }
        }
    }
    Ok(flags)
}
