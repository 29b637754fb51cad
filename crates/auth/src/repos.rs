//! Which collection a registry repository belongs to: prefixes of
//! repository names mapped to collections (`team-a` → `/shared/team-a`
//! covers `team-a/app` and `team-a/tools/x`); the longest prefix wins and
//! repositories under no prefix are in `/`. Grants on a collection then
//! decide pushes and pulls of its repositories.

use berth_state::ClusterCommand;

use crate::policy::collection_path;
use crate::{Access, Error, Index, Result};

pub use berth_state::records::RepositoryCollection;
/// Repository-name prefix → collection.
pub use berth_state::tables::REPOSITORY_COLLECTIONS;

fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 255
        && prefix.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
}

impl Index {
    /// The collection repository `name` belongs to.
    pub fn repository_collection(&self, name: &str) -> &str {
        self.repository_collections
            .iter()
            .find(|(prefix, _)| {
                name == prefix
                    || (name.starts_with(prefix.as_str()) && name.as_bytes().get(prefix.len()) == Some(&b'/'))
            })
            .map_or("/", |(_, c)| c.as_str())
    }

    /// Sets the prefix mappings (sorted here, longest first).
    pub(crate) fn set_repository_collections(&mut self, mut mappings: Vec<(String, String)>) {
        mappings.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        self.repository_collections = mappings;
    }
}

impl Access {
    /// Puts repositories named `prefix` or `prefix/...` in `collection`.
    pub fn set_repository_collection(&self, prefix: &str, collection: &str) -> Result<RepositoryCollection> {
        let prefix = prefix.trim_matches('/');
        if !valid_prefix(prefix) {
            return Err(Error::Invalid(format!(
                "invalid repository prefix {prefix:?}: lowercase path components of letters, digits, '.', '_' and '-'"
            )));
        }
        let collection = collection_path(collection).ok_or_else(|| {
            Error::Invalid(format!(
                "invalid collection {collection:?}: use a path like /shared/team-a"
            ))
        })?;
        let record = RepositoryCollection {
            prefix: prefix.to_string(),
            collection,
        };
        self.state
            .propose(ClusterCommand::SetRepositoryCollection { record: record.clone() })?;
        Ok(record)
    }

    pub fn remove_repository_collection(&self, prefix: &str) -> Result<()> {
        let prefix = prefix.trim_matches('/').to_string();
        self.state
            .propose(ClusterCommand::RemoveRepositoryCollection { prefix })?;
        Ok(())
    }

    pub fn list_repository_collections(&self) -> Result<Vec<RepositoryCollection>> {
        Ok(self
            .store
            .list::<RepositoryCollection>(REPOSITORY_COLLECTIONS)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_on_whole_components() {
        let mut index = Index::default();
        index.set_repository_collections(vec![
            ("team-a".into(), "/shared/team-a".into()),
            ("team-a/secret".into(), "/private".into()),
        ]);
        assert_eq!(index.repository_collection("team-a"), "/shared/team-a");
        assert_eq!(index.repository_collection("team-a/app"), "/shared/team-a");
        assert_eq!(index.repository_collection("team-a/secret/x"), "/private");
        assert_eq!(index.repository_collection("team-ab/app"), "/");
        assert_eq!(index.repository_collection("other"), "/");
        assert!(valid_prefix("team-a/tools") && !valid_prefix("Team") && !valid_prefix("a//b") && !valid_prefix(""));
    }
}
