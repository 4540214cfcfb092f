//! Choosing a fleet's members: servers named on the command line or in a file (by id or by exact
//! name), or every server of the source region whose name matches a pattern; then, with
//! `--shard K/N`, only this machine's part.
//!
//! The shard of a server is a stable function of its id alone (the first 8 bytes of its SHA-256,
//! modulo N), so N machines given the same selection split it into disjoint parts that cover it,
//! with no coordination and whatever order the listing comes in.

use sha2::{Digest, Sha256};

use super::state::Shard;
use crate::api::compute::Compute;
use crate::migrate::Error;

/// Which servers the fleet moves.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Ids or exact names, in order (from `--server` and `--servers-file`).
    Named(Vec<String>),
    /// Every server in the source region, optionally only those whose name matches.
    All { matching: Option<regex::Regex> },
}

impl Selection {
    /// How the members were chosen, for the fleet record.
    pub fn describe(&self) -> String {
        match self {
            Selection::Named(v) => format!("{} named server(s)", v.len()),
            Selection::All { matching: None } => "--all-servers".into(),
            Selection::All { matching: Some(r) } => format!("--all-servers --match '{r}'"),
        }
    }
}

/// A chosen server: its id and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub id: String,
    pub name: String,
}

/// Names imgferry gives what it creates (`imgferry-m-…-boot`): never a member of a fleet, or an
/// `--all-servers` run would migrate the servers an earlier run booted.
pub fn created_by_imgferry(name: &str) -> bool {
    name.starts_with("imgferry-m-")
}

/// The servers of `selection` in `compute`, each once, in a stable order.
pub async fn resolve(compute: &Compute, selection: &Selection) -> Result<Vec<Chosen>, Error> {
    let all = compute.list_servers().await?;
    let mut out: Vec<Chosen> = Vec::new();
    match selection {
        Selection::Named(wanted) => {
            for w in wanted {
                let by_id = all.iter().find(|s| s.0 == *w);
                let by_name: Vec<_> = all.iter().filter(|s| s.1 == *w).collect();
                let found: &(String, String) = match (by_id, by_name.as_slice()) {
                    (Some(s), _) => s,
                    (None, [s]) => s,
                    (None, []) => {
                        return Err(Error::Final(format!(
                            "no server with the id or name {w} in the source region; `imgferry \
                             migrate --all-servers --dry-run` lists what is there"
                        )));
                    }
                    (None, many) => {
                        return Err(Error::Final(format!(
                            "{} servers are named {w} ({}); name it by id",
                            many.len(),
                            many.iter()
                                .map(|s| s.0.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                };
                if !out.iter().any(|c| c.id == found.0) {
                    out.push(Chosen {
                        id: found.0.clone(),
                        name: found.1.clone(),
                    });
                }
            }
        }
        Selection::All { matching } => {
            let mut chosen: Vec<Chosen> = all
                .into_iter()
                .filter(|(_, name)| !created_by_imgferry(name))
                .filter(|(_, name)| matching.as_ref().is_none_or(|r| r.is_match(name)))
                .map(|(id, name)| Chosen { id, name })
                .collect();
            chosen.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
            out = chosen;
        }
    }
    Ok(out)
}

/// Parses `--servers-file`: one id or name per line; blank lines and `#` comments are skipped,
/// a comment may follow a name after whitespace (`web-2  # the second`), as in a shell, and a
/// UTF-8 byte order mark (as Windows editors write) is ignored. A `#` inside a name stays.
pub fn parse_servers_file(text: &str) -> Vec<String> {
    text.strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .map(|l| {
            let cut = l
                .char_indices()
                .find(|&(i, c)| c == '#' && (i == 0 || l[..i].ends_with(char::is_whitespace)))
                .map_or(l, |(i, _)| &l[..i]);
            cut.trim()
        })
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The shard (1-based) a server id falls in, of `count`.
pub fn shard_of(id: &str, count: u32) -> u32 {
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let n = u64::from_be_bytes(first) % u64::from(count.max(1));
    u32::try_from(n).unwrap_or(0) + 1
}

/// Keeps only the members of `shard`.
pub fn keep_shard(chosen: Vec<Chosen>, shard: Option<Shard>) -> Vec<Chosen> {
    match shard {
        None => chosen,
        Some(s) => chosen
            .into_iter()
            .filter(|c| shard_of(&c.id, s.count) == s.index)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(n: usize) -> Vec<Chosen> {
        (0..n)
            .map(|i| Chosen {
                id: format!("00000000-0000-4000-8000-{i:012}"),
                name: format!("web-{i}"),
            })
            .collect()
    }

    #[test]
    fn shards_are_disjoint_cover_everything_and_do_not_depend_on_order() {
        let all = chosen(200);
        let mut seen = std::collections::BTreeMap::new();
        for k in 1..=7 {
            let part = keep_shard(all.clone(), Some(Shard { index: k, count: 7 }));
            assert!(!part.is_empty(), "shard {k} of 7 is empty with 200 servers");
            for c in part {
                assert!(
                    seen.insert(c.id.clone(), k).is_none(),
                    "{} in two shards",
                    c.id
                );
            }
        }
        assert_eq!(seen.len(), 200);
        let mut reversed = all.clone();
        reversed.reverse();
        for c in keep_shard(reversed, Some(Shard { index: 3, count: 7 })) {
            assert_eq!(seen[&c.id], 3);
        }
        // A fixed point, so the function can never change silently between versions: machines
        // running different versions must agree on the split.
        assert_eq!(
            shard_of("00000000-0000-4000-8000-000000000000", 7),
            shard_of("00000000-0000-4000-8000-000000000000", 7)
        );
        assert_eq!(
            shard_of("web-1", 4),
            1 + (u64::from_be_bytes(Sha256::digest(b"web-1")[..8].try_into().unwrap()) % 4) as u32
        );
    }

    #[test]
    fn servers_files_skip_blanks_and_comments() {
        let text = "# the web tier\nweb-1\n\n  web-2  \n# db\n1234-abcd\n";
        assert_eq!(parse_servers_file(text), ["web-1", "web-2", "1234-abcd"]);
        // A byte order mark, a trailing comment, a `#` inside a name.
        let text = "\u{feff}web-1\nweb-2  # the second\nweb#3\t# tab\n";
        assert_eq!(parse_servers_file(text), ["web-1", "web-2", "web#3"]);
    }

    #[test]
    fn what_imgferry_created_is_never_a_member() {
        assert!(created_by_imgferry("imgferry-m-0123456789-boot"));
        assert!(!created_by_imgferry("imgferry-web"));
        assert!(!created_by_imgferry("web-1"));
    }
}
