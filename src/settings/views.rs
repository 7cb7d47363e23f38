//! `[views]`: which backend keeps the read views, and where. A new backend (Elasticsearch) is
//! a `ViewsKind` variant and its fields here, and its arm in `compose/views.rs`.

use std::path::PathBuf;

use super::parse::Section;

/// The view store backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ViewsKind {
    /// tantivy indexes in local directories (`dir`).
    #[default]
    Tantivy,
}

/// `[views]`.
#[derive(Clone, Debug, Default)]
pub struct ViewsSettings {
    /// `kind`: `tantivy` (default).
    pub kind: ViewsKind,
    /// `dir`: where the views live; default `views` in `[store] data_dir`.
    pub dir: Option<PathBuf>,
}

impl Section for ViewsSettings {
    const NAME: &'static str = "views";
    const KEYS: &'static [(&'static str, Option<&'static str>)] = &[("kind", None), ("dir", None)];

    fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        match key {
            "kind" => {
                self.kind = match v.trim() {
                    "tantivy" => ViewsKind::Tantivy,
                    _ => return Err("must be tantivy".into()),
                }
            }
            "dir" if v.is_empty() => return Err("empty".into()),
            "dir" => self.dir = Some(PathBuf::from(v)),
            _ => return Err("not a setting of this section".into()),
        }
        Ok(())
    }
}
