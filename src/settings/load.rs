//! Reads the layers of settings, each overriding the one before: defaults, a TOML file
//! (`--config FILE`), `ANNALS_*` environment variables, command-line flags. A key is spelled alike
//! in the file and the environment (`[http] max_page` is `ANNALS_HTTP__MAX_PAGE`), and the flat
//! names of earlier versions (`ANNALS_MAX_PAGE`, `max_page` at the top of a file) still set
//! the same field. A value is kept as text until its section parses it, so every error names the
//! setting as the operator wrote it and where (`ANNALS_MAX_PAGE`, `http.max_page in annals.toml`,
//! `--listen`): nobody has to guess which layer to fix.

use std::path::{Path, PathBuf};

use super::http::HttpSettings;
use super::invalidations::InvalidationSettings;
use super::parse::Section;
use super::projectors::ProjectorSettings;
use super::store::StoreSettings;
use super::views::ViewsSettings;
use crate::Error;

type Keys = &'static [(&'static str, Option<&'static str>)];

/// Every section; the top level is the section without a name (`role`).
const SECTIONS: [(&str, Keys); 6] = [
    ("", &[("role", None)]),
    (StoreSettings::NAME, StoreSettings::KEYS),
    (ViewsSettings::NAME, ViewsSettings::KEYS),
    (HttpSettings::NAME, HttpSettings::KEYS),
    (ProjectorSettings::NAME, ProjectorSettings::KEYS),
    (InvalidationSettings::NAME, InvalidationSettings::KEYS),
];

/// The settings `annals serve` takes as flags; `None` where not given.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--role`
    pub role: Option<String>,
    /// `--listen` (`[http] listen`)
    pub listen: Option<String>,
    /// `--data-dir` (`[store] data_dir`)
    pub data_dir: Option<PathBuf>,
}

/// A value some layer gave, and where (for messages).
pub(super) struct Given {
    /// The section's `NAME` (`""`: the top level).
    pub section: &'static str,
    pub key: &'static str,
    pub value: String,
    /// The setting as the operator wrote it: `ANNALS_MAX_PAGE`, `http.max_page in FILE`, `--listen`.
    pub origin: String,
}

/// The environment variable of a key: `ANNALS_ROLE`, `ANNALS_STORE__KIND`.
pub fn env_name(section: &str, key: &str) -> String {
    match section {
        "" => format!("ANNALS_{}", key.to_uppercase()),
        _ => format!("ANNALS_{}__{}", section.to_uppercase(), key.to_uppercase()),
    }
}

/// The values every layer gave, in the order they apply: the file's, the environment's, the
/// flags'.
pub(super) fn given(file: Option<&Path>, env: &[(String, String)], flags: Flags) -> Result<Vec<Given>, Error> {
    let mut given = match file {
        Some(path) => from_file(path)?,
        None => Vec::new(),
    };
    given.extend(from_env(env)?);
    let flag = |section, key, value: String, name: &str| Given { section, key, value, origin: name.to_owned() };
    given.extend(flags.role.map(|v| flag("", "role", v, "--role")));
    given.extend(flags.listen.map(|v| flag("http", "listen", v, "--listen")));
    given.extend(flags.data_dir.map(|v| flag("store", "data_dir", v.to_string_lossy().into_owned(), "--data-dir")));
    Ok(given)
}

fn from_file(path: &Path) -> Result<Vec<Given>, Error> {
    let config = |reason: String| Error::Config { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| config(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| config(e.to_string()))?;
    let mut given = Vec::new();
    for (name, value) in table {
        if let toml::Value::Table(inner) = value {
            let Some((section, keys)) = SECTIONS.iter().find(|(s, _)| !s.is_empty() && *s == name) else {
                return Err(config(format!(
                    "unknown section [{name}]; the sections are [store], [views], [http], [projectors], [invalidations]"
                )));
            };
            for (key, value) in inner {
                let Some((key, _)) = keys.iter().find(|(k, _)| *k == key) else {
                    let known: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                    return Err(config(format!("unknown setting {name}.{key}; [{name}] has {}", known.join(", "))));
                };
                let origin = format!("{name}.{key} in {}", path.display());
                given.push(Given {
                    section,
                    key,
                    value: scalar(value).map_err(|r| config(format!("{name}.{key}: {r}")))?,
                    origin,
                });
            }
        } else {
            // The top level: `role`, or a flat name of earlier versions (`max_page = 50`).
            let found = SECTIONS.iter().find_map(|(section, keys)| {
                keys.iter().find_map(|(key, alias)| {
                    let flat = alias.map(|a| a.trim_start_matches("ANNALS_").to_lowercase());
                    let hit = (section.is_empty() && *key == name) || flat.as_deref() == Some(name.as_str());
                    hit.then_some((*section, *key))
                })
            });
            let Some((section, key)) = found else {
                if name == "admin_key" {
                    return Err(config("admin_key is a secret, read from ANNALS_ADMIN_KEY only (never a file)".into()));
                }
                return Err(config(format!("unknown setting {name}")));
            };
            let origin = format!("{name} in {}", path.display());
            given.push(Given {
                section,
                key,
                value: scalar(value).map_err(|r| config(format!("{name}: {r}")))?,
                origin,
            });
        }
    }
    Ok(given)
}

fn from_env(env: &[(String, String)]) -> Result<Vec<Given>, Error> {
    let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut given = Vec::new();
    let mut known = Vec::new();
    for (section, keys) in SECTIONS {
        for (key, alias) in keys {
            let name = env_name(section, key);
            let value = match (var(&name), alias.and_then(var)) {
                (Some(new), Some(old)) if new != old => {
                    return Err(Error::Combination {
                        setting: name,
                        reason: format!(
                            "{} (its earlier name) is set too, to another value: set one of them",
                            alias.unwrap_or_default()
                        ),
                    })
                }
                (Some(new), _) => Some((new, name.clone())),
                (None, Some(old)) => Some((old, alias.unwrap_or_default().to_owned())),
                (None, None) => None,
            };
            if let Some((value, origin)) = value {
                given.push(Given { section, key, value, origin });
            }
            known.push(name);
        }
    }
    // A misspelt nested name would otherwise be ignored without a word.
    if let Some((name, _)) =
        env.iter().find(|(k, _)| k.starts_with("ANNALS_") && k.contains("__") && !known.contains(k))
    {
        return Err(Error::Combination {
            setting: name.clone(),
            reason: "no such setting: nested ones are ANNALS_<SECTION>__<KEY>, as [section] key in a file (see the README's table)".into(),
        });
    }
    Ok(given)
}

/// A value in the config file: a number or a boolean may be written bare (`max_page = 50`,
/// `strict_schemas = true`) or quoted, as in the environment; a list of strings (`cors_origins`)
/// is the comma-separated text.
fn scalar(value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Array(items) => {
            let texts: Option<Vec<String>> = items.into_iter().map(|i| i.as_str().map(str::to_owned)).collect();
            texts.map(|t| t.join(",")).ok_or_else(|| "a list holds strings only".into())
        }
        _ => Err("must be a string, a number or a boolean".into()),
    }
}
