//! Device classes: the label under which an adapter's profiles are filed and planned
//! (`L4`, `T4`, `V100`, ... in the published profiles).
//!
//! A label comes from a class file when one matches the adapter, else it is derived from the
//! adapter's name. The class file (TOML) is the one given with `--classes`, else
//! `$POOLPIPE_CLASSES`, else `$XDG_CONFIG_HOME/poolpipe/classes.toml` (or
//! `~/.config/poolpipe/classes.toml`) when it exists:
//!
//! ```toml
//! [[class]]
//! name = "edge"          # the label: letters, digits, '_' and '.'
//! match = "llvmpipe"     # case-insensitive substring of the adapter name
//! backend = "Vulkan"     # optional: only adapters of this backend
//! ```
//!
//! The first matching rule wins. Labels never contain '-': profile files are named
//! `{model}-{class}-{k}.csv` and model names do contain '-'.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use poolpipe_engine::gpu::AdapterDescription;
use serde::{Deserialize, Serialize};

/// One rule of a class file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassRule {
    /// The class label.
    pub name: String,
    /// Case-insensitive substring of the adapter name.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Only adapters of this backend (Vulkan, Metal, Dx12, Gl), case-insensitive.
    #[serde(default)]
    pub backend: Option<String>,
}

/// A class file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// Rules, first match wins.
    #[serde(default)]
    pub class: Vec<ClassRule>,
    /// Where it was read from (none: no file).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// Where a label came from.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LabelSource {
    /// A rule of the class file.
    Config,
    /// Derived from the adapter name.
    Derived,
    /// Given on the command line.
    Given,
}

/// Checks a class label: non-empty, letters, digits, '_' and '.' only.
pub fn validate(label: &str) -> Result<()> {
    if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        bail!(
            "class label '{label}' must be letters, digits, '_' or '.' (no '-': profile files are named MODEL-CLASS-K.csv)"
        );
    }
    Ok(())
}

impl ClassConfig {
    /// Reads the class file: `explicit`, else `$POOLPIPE_CLASSES`, else the user's config
    /// folder when the file exists there. A file named explicitly or by the environment
    /// must exist.
    pub fn load(explicit: Option<&Path>) -> Result<ClassConfig> {
        let named = explicit.map(Path::to_path_buf).or_else(|| std::env::var_os("POOLPIPE_CLASSES").map(PathBuf::from));
        let path = match named {
            Some(p) => p,
            None => {
                let base = std::env::var_os("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
                match base.map(|b| b.join("poolpipe/classes.toml")) {
                    Some(p) if p.is_file() => p,
                    _ => return Ok(ClassConfig::default()),
                }
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the class file {} (see `poolpipe devices --help`)", path.display()))?;
        Self::parse(&text, &path)
    }

    /// Parses a class file's text.
    pub fn parse(text: &str, path: &Path) -> Result<ClassConfig> {
        let mut cfg: ClassConfig = toml::from_str(text).with_context(|| {
            format!("class file {}: expected [[class]] tables with name, match and optional backend", path.display())
        })?;
        for r in &cfg.class {
            validate(&r.name).with_context(|| format!("class file {}", path.display()))?;
            if r.pattern.is_empty() {
                bail!("class file {}: class '{}' has an empty match", path.display(), r.name);
            }
        }
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// The label of an adapter and where it came from.
    pub fn label(&self, a: &AdapterDescription) -> (String, LabelSource) {
        let name = a.name.to_lowercase();
        for r in &self.class {
            let backend_ok = r.backend.as_ref().is_none_or(|b| b.eq_ignore_ascii_case(&a.backend));
            if backend_ok && name.contains(&r.pattern.to_lowercase()) {
                return (r.name.clone(), LabelSource::Config);
            }
        }
        (derive(&a.name), LabelSource::Derived)
    }
}

/// Vendor and brand words that say nothing about the class.
const NOISE: &[&str] = &[
    "nvidia",
    "geforce",
    "tesla",
    "quadro",
    "amd",
    "ati",
    "radeon",
    "intel",
    "apple",
    "mesa",
    "microsoft",
    "corporation",
];
/// Words after the model number that do change the class.
const MODIFIERS: &[&str] = &["ti", "super", "xt", "xtx", "max", "pro", "ultra", "plus", "mobile", "laptop"];

/// A label from an adapter name: vendor words and parenthesised parts dropped, then the
/// words up to the first one with a digit (cut at its first '-'), then known modifiers:
/// "NVIDIA L4" -> L4, "Tesla V100-SXM2-16GB" -> V100, "NVIDIA H100 80GB HBM3" -> H100,
/// "NVIDIA GeForce RTX 3080 Ti" -> RTX3080Ti, "llvmpipe (LLVM 15.0.6, 256 bits)" -> llvmpipe.
pub fn derive(adapter_name: &str) -> String {
    let mut text = String::new();
    let mut depth = 0usize;
    for c in adapter_name.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => text.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = text.split_whitespace().filter(|w| !NOISE.contains(&w.to_lowercase().as_str())).collect();
    let mut label = String::new();
    let mut rest = words.iter();
    for w in rest.by_ref() {
        let has_digit = w.chars().any(|c| c.is_ascii_digit());
        label.push_str(if has_digit { w.split('-').next().unwrap_or(w) } else { w });
        if has_digit {
            break;
        }
    }
    for w in rest {
        if MODIFIERS.contains(&w.to_lowercase().as_str()) {
            label.push_str(w);
        } else {
            break;
        }
    }
    let label: String = label.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.').collect();
    if label.is_empty() { "gpu".into() } else { label }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_derived_from_adapter_names() {
        for (name, want) in [
            ("NVIDIA L4", "L4"),
            ("Tesla T4", "T4"),
            ("Tesla P4", "P4"),
            ("Tesla V100-SXM2-16GB", "V100"),
            ("NVIDIA H100 80GB HBM3", "H100"),
            ("NVIDIA A100-SXM4-80GB", "A100"),
            ("NVIDIA GeForce RTX 3080 Ti", "RTX3080Ti"),
            ("AMD Radeon RX 7900 XTX", "RX7900XTX"),
            ("AMD Radeon RX 7900 XTX (RADV NAVI31)", "RX7900XTX"),
            ("Intel(R) Arc(tm) A770 Graphics (DG2)", "ArcA770"),
            ("Apple M2 Max", "M2Max"),
            ("llvmpipe (LLVM 15.0.6, 256 bits)", "llvmpipe"),
            ("Intel(R) UHD Graphics 630", "UHDGraphics630"),
            ("(((", "gpu"),
        ] {
            assert_eq!(derive(name), want, "{name}");
            validate(&derive(name)).unwrap();
        }
    }

    #[test]
    fn class_file_rules_match_name_and_backend() {
        let cfg = ClassConfig::parse(
            "[[class]]\nname = \"edge\"\nmatch = \"LLVMPIPE\"\nbackend = \"gl\"\n[[class]]\nname = \"lvp\"\nmatch = \"llvmpipe\"\n",
            Path::new("classes.toml"),
        )
        .unwrap();
        let mut a = poolpipe_engine::gpu::list_adapters().into_iter().next().expect("an adapter (lavapipe)");
        a.name = "llvmpipe (LLVM 15)".into();
        a.backend = "Vulkan".into();
        assert_eq!(cfg.label(&a), ("lvp".to_string(), LabelSource::Config));
        a.backend = "Gl".into();
        assert_eq!(cfg.label(&a), ("edge".to_string(), LabelSource::Config));
        a.name = "NVIDIA L4".into();
        assert_eq!(cfg.label(&a), ("L4".to_string(), LabelSource::Derived));
    }

    #[test]
    fn bad_class_files_say_what_is_wrong() {
        let e = ClassConfig::parse("[[class]]\nname = \"my-gpu\"\nmatch = \"x\"\n", Path::new("c.toml")).unwrap_err();
        assert!(format!("{e:#}").contains("no '-'"), "{e:#}");
        let e = ClassConfig::parse("[[class]]\nname = \"a\"\n", Path::new("c.toml")).unwrap_err();
        assert!(format!("{e:#}").contains("c.toml"), "{e:#}");
        let e = ClassConfig::parse("[[class]]\nname = \"a\"\nmatch = \"x\"\ncolour = 1\n", Path::new("c.toml"))
            .unwrap_err();
        assert!(format!("{e:#}").contains("colour"), "{e:#}");
        let e = ClassConfig::load(Some(Path::new("/nonexistent/classes.toml"))).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/classes.toml"), "{e:#}");
    }
}
